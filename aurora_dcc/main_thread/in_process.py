"""``InProcessServer`` and ``InProcessChannel``: a host's clients in its own process, no socket.

A host (``QtHost``, ``BlenderHost``) serves its handlers to other processes
over its socket server. Code in the host's own process (a script in the
DCC's editor, a tool panel, a plugin) reaches the same handlers through an
``InProcessChannel`` instead: ``create_for_context()`` returns one there, so
``Peer(create_for_context()).request("scene.ls")`` works unchanged in a
packed backend (a socket to the host) and inside the DCC (no socket).

What "in-process" means here: every message, in both directions, is handled
on the host's main thread, where its handlers may call the DCC's API, as
objects (no encoding, as on a ``ThreadChannel``). A message sent *on* the
main thread is handled at once, in the sending call: a request made there
has its reply before ``send`` returns, so the main thread never waits for
itself (no freeze, no deadlock). A message sent on another thread is posted
to the main thread (``DccIpcChannel.post`` of the host's ``main`` channel),
in order, and the sender waits like any client. What the host sends to a
client (replies, ``ready``, the host's events) reaches the client's
``on_message`` handlers (a ``Peer``) on the main thread too, or waits for
``receive()`` when it has none (up to the inbox's capacity: a client that
stops reading is closed, as a socket server drops one that falls behind;
the main thread never waits for it).

Each connection is a pair of ends sharing one ``ShutdownState``: the client's
``InProcessChannel`` and the host's end, which the server hands to its
``on_connection`` handlers (an ``RpcServer`` serves its registry on it).

Usage::

    server = InProcessServer(host.name, host.main, peer_name="maya-2025")
    rpc = RpcServer(server, host.registry)             # the host's handlers
    channel = server.connect("panel")                  # what create_for_context() returns
    peer = Peer(channel)
    peer.request("scene.ls", {"pattern": "p*"})        # ran on the main thread
    channel.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Optional

from ..channel.base import IpcChannel, Waitable
from ..channel.metrics import IpcChannelMetrics
from ..channel.server import ConnectionHandler, IpcServer
from ..channel.shutdown import ShutdownState
from ..channel.thread import ThreadChannel
from ..errors import ChannelTimeout, IpcChannelError, ShuttingDown
from ..protocol.handshake import ready_message
from ..protocol.message import IpcMessage
from .channel import DccIpcChannel

__all__ = ["InProcessChannel", "InProcessServer"]

log = logging.getLogger(__name__)


class _End(IpcChannel):
    """One end of an in-process connection: receives on the main thread (see module doc)."""

    delivers_while_waiting = True  # a wait on the main thread keeps its work running

    def __init__(self, name: str, main: DccIpcChannel, state: ShutdownState) -> None:
        super().__init__(name, state)
        self._main = main
        self._inbox = ThreadChannel(name, shutdown_state=state)  # for receive() without handlers
        self.metrics = self._inbox.metrics
        self._other: Optional[_End] = None

    def send(self, msg: IpcMessage) -> None:
        """Hand ``msg`` to the other end, on the main thread (see the module docstring)."""
        other = self._other
        assert other is not None
        self._state.check()
        if self._main.on_main_thread():
            other._arrive(msg)
        else:
            self._main.post(other._arrive, msg)

    def _arrive(self, msg: IpcMessage) -> None:
        """Main thread: give ``msg`` to this end's handlers, or queue it for ``receive()``."""
        if self._state.shutting_down:
            return  # the connection closed while this was posted
        if self._message_handlers:
            self._dispatch(msg)
            return
        try:
            self._inbox.send(msg, 0)  # never wait: this is the main thread
        except IpcChannelError as exc:
            log.warning("in-process channel %r closed: its reader fell behind: %s", self._name, exc)
            self.shutdown()

    def _message_handlers_changed(self) -> None:
        # What arrived before the first handler (a ready, an event) goes to it, on the main thread.
        if not (self._message_handlers and self._inbox.queue_length()):
            return
        if self._main.on_main_thread():
            self._hand_queued()
        else:
            with contextlib.suppress(IpcChannelError):  # closing: nothing to hand
                self._main.post(self._hand_queued)

    def _hand_queued(self) -> None:
        while self._message_handlers:
            msg = self._inbox.try_receive()
            if msg is None:
                return
            self._dispatch(msg)

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        return self._inbox.receive(timeout)

    def try_receive(self) -> Optional[IpcMessage]:
        return self._inbox.try_receive()

    def _queue_length(self) -> int:
        return self._inbox.queue_length()

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """On the main thread, keep running what is posted to it while waiting."""
        return self._main.wait_event(event, timeout)


class InProcessChannel(_End):
    """A client's channel to a host in the same process (see the module docstring).

    Made by :meth:`InProcessServer.connect` (``create_for_context()`` in a
    process that hosts). ``peer_info`` holds the host's ``ready`` as of the
    connection (``peer``, ``handlers``), as a socket channel's would.

    Usage::

        channel = create_for_context()                 # in Maya, after start_host()
        with Peer(channel) as peer:
            nodes = peer.request("scene.ls", {"pattern": "*"})   # any thread
        channel.close()
    """

    def __init__(
        self, name: str, main: DccIpcChannel, state: ShutdownState, host_info: dict[str, Any]
    ) -> None:
        super().__init__(name, main, state)
        self._host_info = host_info

    @property
    def peer_info(self) -> dict[str, object]:
        return dict(self._host_info)


class InProcessServer(IpcServer):
    """Accepts :class:`InProcessChannel` clients of a host; their messages run on ``main``'s thread.

    ``name`` is the host's channel name (for logs and ``address``); ``main``
    is the host's ``DccIpcChannel`` (its main thread); ``peer_name`` the name
    the host gives in ``ready``.

    Usage::

        server = InProcessServer("auroraview_4711", host.main, peer_name="nuke-15")
        server.on_connection(lambda end: log.info("in-process client %s", end.name))
        channel = server.connect("panel")
        server.emit("scene.changed", {})           # to every in-process client
        server.close()                             # their channels shut down
    """

    def __init__(self, name: str, main: DccIpcChannel, *, peer_name: str) -> None:
        self._name = name
        self._main = main
        self._peer_name = peer_name
        self.metrics = IpcChannelMetrics(lambda: 0)
        self._lock = threading.Condition()
        self._connections: list[IpcChannel] = []
        self._unaccepted: list[IpcChannel] = []
        self._handlers: list[ConnectionHandler] = []
        self._handler_names: list[str] = []
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return f"in-process:{self._name}"

    @property
    def connections(self) -> list[IpcChannel]:
        """The host's ends of the open connections, oldest first."""
        with self._lock:
            return list(self._connections)

    def connect(self, name: str = "in-process") -> InProcessChannel:
        """A new client channel to this host (any thread). Raises ``ShuttingDown`` once closed."""
        state = ShutdownState()
        info: dict[str, Any] = dict(ready_message(self._peer_name, self._handler_names).data)
        client = InProcessChannel(name, self._main, state, info)
        host_end = _End(f"{self._name}<-{name}", self._main, state)
        client._other, host_end._other = host_end, client
        with self._lock:
            if self._closed:
                raise ShuttingDown(f"the host {self._name!r} is closed")
            self._connections.append(host_end)
            self._unaccepted.append(host_end)
            handlers = list(self._handlers)
            self._lock.notify_all()
        state.on_shutdown(lambda: self._forget(host_end))
        for handler in handlers:
            handler(host_end)
        return client

    def _forget(self, end: IpcChannel) -> None:
        with self._lock:
            for held in (self._connections, self._unaccepted):
                if end in held:
                    held.remove(end)

    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        """The host's end of the next connection not yet taken; raises ``ChannelTimeout``."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._unaccepted or self._closed, timeout):
                raise ChannelTimeout(f"no in-process client of {self._name!r} within {timeout}s")
            if not self._unaccepted:
                raise ShuttingDown(f"the host {self._name!r} is closed")
            return self._unaccepted.pop(0)

    def on_connection(self, handler: ConnectionHandler) -> None:
        with self._lock:
            self._handlers.append(handler)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every in-process client (skipping one that closes meanwhile)."""
        connections = self._connections
        if not connections:  # the usual case: one check per host event
            return
        msg = IpcMessage.event_message(event, data)
        for end in self.connections:
            with contextlib.suppress(ShuttingDown):  # that client is closing
                end.send(msg)

    def set_handler_names(self, names: list[str]) -> None:
        """Announce ``names`` to every client in a fresh ``ready``."""
        self._handler_names = list(names)
        for end in self.connections:
            with contextlib.suppress(ShuttingDown):  # that client is closing
                end.send(ready_message(self._peer_name, self._handler_names))

    def close(self) -> None:
        """Shut every connection down (their pending requests fail with -32002). Idempotent."""
        with self._lock:
            self._closed = True
            ends = list(self._connections)
            self._lock.notify_all()
        for end in ends:
            end.shutdown()
