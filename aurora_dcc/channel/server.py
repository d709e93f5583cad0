"""``IpcServer``: the interface of a server that accepts many channel connections.

Both socket servers (``LocalSocketChannelServer``, pure Python, and
``QtLocalSocketServer``, on Qt's event loop) implement it, through
``aurora_dcc.transport.stream_server.StreamServer`` (what they share), so code above
them (RPC, packed mode, the hosts) does not care which one runs.

Usage::

    with LocalSocketChannelServer("auroraview_4711", token=token) as server:
        server.on_connection(lambda conn: conn.on_message(handle))
        server.emit("selection.changed", {"nodes": ["pCube1"]})   # to every client
        conn = server.accept(timeout=5.0)                         # or wait for one
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Callable, Optional

from .base import IpcChannel
from .metrics import IpcChannelMetrics

__all__ = ["ConnectionHandler", "IpcServer"]

ConnectionHandler = Callable[[IpcChannel], None]


class IpcServer(ABC):
    """A listening endpoint; every accepted client is an :class:`IpcChannel`.

    ``metrics`` aggregates the server's own counters (connections refused,
    broadcast sends); each connection keeps its own ``metrics`` too.

    Usage::

        def serve(server: IpcServer) -> None:     # any transport's server
            server.on_connection(lambda conn: conn.on_message(print_message))
            server.emit("scene.saved", {"path": "shot.ma"})   # to every client
    """

    metrics: IpcChannelMetrics

    @property
    @abstractmethod
    def name(self) -> str:
        """The channel name clients connect to."""

    @property
    @abstractmethod
    def address(self) -> str:
        """The resolved socket path or pipe name."""

    @property
    @abstractmethod
    def connections(self) -> list[IpcChannel]:
        """The established connections, oldest first."""

    @abstractmethod
    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        """The next established connection not yet taken; raises ``ChannelTimeout``."""

    @abstractmethod
    def on_connection(self, handler: ConnectionHandler) -> None:
        """Call ``handler(conn)`` for every connection once its session is established."""

    @abstractmethod
    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, hold this thread's ``emit``s; write them together at its end.

        Like ``IpcChannel.batch`` for every connection: the fast way to stream
        events to clients. A client that is gone when the block ends is skipped.

        Usage::

            with server.batch():
                for node in changed:
                    server.emit("node.changed", {"node": node})
        """
        return contextlib.nullcontext()

    @abstractmethod
    def set_handler_names(self, names: list[str]) -> None:
        """Set the handler names announced in ``ready``; re-announce to connected clients."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening, close every connection, remove the socket file. Idempotent.

        The socket servers say ``bye`` first and close a connection whose requests
        are still being handled once they are answered, within a grace period
        (docs/PROTOCOL.md, Session 6), without waiting for that here.
        """

    def __enter__(self) -> IpcServer:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
