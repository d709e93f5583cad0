"""``LocalSocketChannelServer``: the pure-Python local-socket server.

An acceptor thread takes each client from the :class:`~aurora_dcc.transport.listener.Listener`
and makes it a :class:`~aurora_dcc.transport.socket_channel.LocalSocketChannel`
with a reader thread of its own; the bookkeeping, ``accept``, broadcasts and
announcements come from :class:`~aurora_dcc.transport.stream_server.StreamServer`.
A watchdog thread, running only while some client is in its handshake, drops
a client whose session is not open ``handshake_timeout`` seconds after it was
accepted (a deadline in total: trickling ``hello`` a byte at a time does not
extend it). Each connection's output is bounded (``max_send_buffer``, see
:mod:`~aurora_dcc.transport.socket_write`). ``close()`` says ``bye`` to every
client and lets the requests they sent before it be answered, for up to
``close_grace`` seconds (:class:`~aurora_dcc.transport.stream_server.StreamServer`).

Usage::

    with LocalSocketChannelServer("auroraview_4711", token="s3cret") as server:
        server.on_connection(lambda conn: conn.on_message(print))
        server.emit("scene.saved", {"path": "shot.ma"})
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Optional

from ..protocol.framing import DEFAULT_MAX_FRAME
from .listener import Listener
from .socket_channel import LocalSocketChannel
from .socket_io import Stream
from .socket_write import DEFAULT_MAX_SEND_BUFFER
from .stream_server import DEFAULT_CLOSE_GRACE, StreamServer

__all__ = ["LocalSocketChannelServer"]

log = logging.getLogger(__name__)


class LocalSocketChannelServer(StreamServer):
    """A pure-Python server on a local socket; every client is a ``LocalSocketChannel``.

    ``token``: required from every client (``None``: any client, with or
    without ``hello``). ``handler_names``: names announced in ``ready``.
    ``handshake_timeout``: a client that has not opened its session that many
    seconds after it was accepted is dropped. ``max_send_buffer``: bytes a
    connection may fall behind by; a broadcast drops a client further behind
    (a reply waits instead, up to ``send_timeout``). ``close_grace``: seconds
    ``close()`` gives requests in flight to be answered. Raises ``AddressInUse``
    when a live server already serves ``name``; a socket file left by a crashed
    server is replaced.

    Usage::

        server = LocalSocketChannelServer("auroraview_4711", token=token)
        server.on_connection(lambda conn: conn.on_message(handle))
        server.emit("scene.saved", {"path": "shot.ma"})
        server.close()
    """

    def __init__(
        self,
        name: str,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        handler_names: Optional[list[str]] = None,
        peer_name: Optional[str] = None,
        handshake_timeout: Optional[float] = 10.0,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        backlog: int = 64,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        super().__init__(
            name,
            token,
            max_frame,
            handler_names=handler_names,
            peer_name=peer_name,
            handshake_timeout=handshake_timeout,
            capacity=capacity,
            close_grace=close_grace,
        )
        self._send_timeout = send_timeout
        self._max_send_buffer = max_send_buffer
        self._handshakes: list[tuple[float, int, LocalSocketChannel]] = []  # a heap of deadlines
        self._watchdog: Optional[threading.Thread] = None
        self._listener = Listener(name, backlog)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"aurora-accept-{name}", daemon=True
        )
        self._acceptor.start()

    @property
    def address(self) -> str:
        return self._listener.address

    def _accept_loop(self) -> None:
        while True:
            stream = self._listener.accept()
            if stream is None or not self._serve(stream):
                return
            del stream  # a connection gone later must not stay alive here

    def _serve(self, stream: Stream) -> bool:
        """Make ``stream`` a connection and start reading it; False once closed."""
        try:
            conn = self._open_connection(stream)
        except Exception:  # keep serving the others
            log.exception("server %r: could not set up a connection", self._name)
            with contextlib.suppress(OSError):
                stream.close()
            return True
        if not self._track(conn):
            conn.close()
            return False
        if self._handshake_timeout is not None:
            self._watch(conn, time.monotonic() + self._handshake_timeout)
        conn.start_reader()
        return True

    def _watch(self, conn: LocalSocketChannel, deadline: float) -> None:
        """Drop ``conn`` if its session is not open by ``deadline``."""
        with self._lock:
            heapq.heappush(self._handshakes, (deadline, id(conn), conn))
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch_handshakes,
                    name=f"aurora-handshakes-{self._name}",
                    daemon=True,
                )
                self._watchdog.start()
            else:
                self._lock.notify_all()

    def _watch_handshakes(self) -> None:
        """The watchdog thread: ends when no client is in its handshake."""
        handshakes = self._handshakes
        while True:
            expired = []
            with self._lock:
                now = time.monotonic()
                while handshakes and (handshakes[0][0] <= now or _settled(handshakes[0][2])):
                    expired.append(heapq.heappop(handshakes)[2])
                if not expired:
                    if not handshakes or self._closed:
                        handshakes.clear()
                        self._watchdog = None
                        return
                    self._lock.wait(handshakes[0][0] - now)
                    continue
            for conn in expired:
                if not _settled(conn):
                    log.warning(
                        "server %r: %r opened no session within %ss; dropped",
                        self._name,
                        conn,
                        self._handshake_timeout,
                    )
                    conn.close(0.0)

    def _open_connection(self, stream: Stream) -> LocalSocketChannel:
        if isinstance(stream, socket.socket) and self._handshake_timeout is not None:
            stream.settimeout(self._handshake_timeout)
        return LocalSocketChannel(
            stream,
            f"{self._name}#{next(self._counter)}",
            server=True,
            token=self._token,
            max_frame=self._max_frame,
            peer_name=self._peer_name,
            list_handler_names=self._current_handler_names,
            capacity=self._capacity,
            send_timeout=self._send_timeout,
            max_send_buffer=self._max_send_buffer,
            # The ready goes out only once the connection is listed: a client whose
            # connect() returned gets every later broadcast (see _session_ready_to_write).
            on_listed=self._list,
            # On the connection's reader thread, before its first message is
            # delivered: a connection handler can register on_message and miss nothing.
            on_established=self._connection_opened,
            on_closed=self._connection_closed,
        )

    @contextlib.contextmanager
    def batch(self, *, write_after_pause: bool = False) -> Iterator[None]:
        """Hold this thread's emits; write them at the block's end (``IpcServer.batch``).

        ``write_after_pause``: see ``LocalSocketChannel.batch``.
        """
        with contextlib.ExitStack() as stack:
            for conn in self._connections():
                if isinstance(conn, LocalSocketChannel):
                    stack.enter_context(
                        conn.batch(skip_if_gone=True, write_after_pause=write_after_pause)
                    )
            yield

    def _stop_listening(self) -> None:
        self._listener.wake()
        self._acceptor.join(2.0)
        self._listener.close()


def _settled(conn: LocalSocketChannel) -> bool:
    """Whether ``conn``'s handshake is over: its session opened, or it ended."""
    return conn.is_connected or conn.is_shutdown()
