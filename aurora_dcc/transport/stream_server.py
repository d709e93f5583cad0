"""What every stream transport's server shares: ``StreamServer``.

The pure-Python and Qt socket servers differ only in how they listen and
accept; the rest lives here, once: the connection bookkeeping, ``accept``,
``on_connection``, broadcast ``emit`` (encoded once; with buffers, once per
connection), ``set_handler_names``, and the graceful close (``bye``, then each
connection closes once the requests it accepted are answered, within
``close_grace`` seconds). Each connection is a
:class:`~aurora_dcc.transport.stream.StreamChannel`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from abc import abstractmethod
from collections import deque
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..channel.metrics import IpcChannelMetrics
from ..channel.server import ConnectionHandler, IpcServer
from ..errors import ChannelTimeout, IpcChannelError, ShuttingDown
from ..protocol.framing import DEFAULT_MAX_FRAME, encode_event
from .buffer_link import PER_CONNECTION, CarriesBuffers
from .stream import StreamChannel

__all__ = ["DEFAULT_CLOSE_GRACE", "StreamServer"]

log = logging.getLogger(__name__)

DEFAULT_CLOSE_GRACE = 5.0
"""Seconds a closing server gives the requests its connections accepted before it
said ``bye`` to be answered; then it closes them anyway (``close_grace``)."""


class StreamServer(IpcServer):
    """A server of stream channels: bookkeeping, ``accept``, broadcast, announcements.

    A transport implements ``address``, ``_stop_listening`` and makes each
    connection (a :class:`StreamChannel`), telling the base of its life:
    ``_track`` (new), ``_list`` (established: broadcasts reach it),
    ``_connection_opened`` (ready for ``accept`` and the connection handlers),
    ``_connection_closed`` (gone). All of them take ``_lock``.

    Usage::

        with LocalSocketChannelServer("auroraview_4711") as server:   # a StreamServer
            server.on_connection(lambda conn: conn.on_message(print))
            server.emit("scene.saved", {"path": "shot.ma"})
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
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        self._name = name
        self._token = token
        self._max_frame = max_frame
        self._handler_names = list(handler_names or [])
        self._peer_name = peer_name
        self._handshake_timeout = handshake_timeout
        self._capacity = capacity
        self._close_grace = close_grace
        self._lock = threading.Condition(threading.Lock())
        self._all: set[StreamChannel] = set()  # every connection still open
        self._established: list[StreamChannel] = []  # broadcasts go to these
        self._pending: deque[StreamChannel] = deque()  # established, not yet accept()ed
        self._connection_handlers: list[ConnectionHandler] = []
        self._counter = itertools.count(1)
        self._closed = False
        self.metrics = IpcChannelMetrics(lambda: len(self._pending))

    # -- the transport's part ----------------------------------------------

    @abstractmethod
    def _stop_listening(self) -> None:
        """Stop accepting clients and release the listener (after ``_begin_close``)."""

    def _wait(self, done: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Block until ``done()`` or ``timeout``; ``_wake`` re-checks."""
        with self._lock:
            return self._lock.wait_for(done, timeout)

    def _wake(self) -> None:
        """The pending queue or the closed flag changed: re-check ``_wait``."""
        with self._lock:
            self._lock.notify_all()

    # -- bookkeeping -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def connections(self) -> list[IpcChannel]:
        return list(self._connections())

    def _connections(self) -> list[StreamChannel]:
        with self._lock:
            return list(self._established)

    def _current_handler_names(self) -> list[str]:
        return list(self._handler_names)

    def _track(self, conn: StreamChannel) -> bool:
        """A new connection, still in its handshake; False if the server is closed."""
        with self._lock:
            if self._closed:
                return False
            self._all.add(conn)
            return True

    def _list(self, conn: StreamChannel) -> None:
        """``conn`` is established: broadcasts reach it from now on."""
        with self._lock:
            if conn not in self._established:
                self._established.append(conn)

    def _connection_opened(self, conn: StreamChannel) -> None:
        """``conn``'s session is open: queue it for ``accept``, run the connection
        handlers (on this thread, before anything is delivered to ``conn``)."""
        with self._lock:
            if conn not in self._established:
                self._established.append(conn)
            self._pending.append(conn)
            handlers = list(self._connection_handlers)
        self._wake()
        for handler in handlers:
            try:
                handler(conn)
            except Exception:
                self.metrics.record_error()
                log.exception("server %r: connection handler %r raised", self._name, handler)

    def _connection_closed(self, conn: StreamChannel) -> None:
        """``conn`` is gone; one that never opened its session counts as an error."""
        with self._lock:
            self._all.discard(conn)
            # Left in _pending for accept(), with what it sent queued, unless the
            # connection handlers had it: nobody may ever accept() (a host), and the
            # queue would keep every connection ever made.
            if self._connection_handlers and conn in self._pending:
                self._pending.remove(conn)
            if conn in self._established:
                self._established.remove(conn)
            elif not self._closed:
                self.metrics.record_error()  # refused, silent, or gone before its session

    # -- the server API ----------------------------------------------------------

    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        pending = self._pending
        self._wait(lambda: bool(pending) or self._closed, timeout)
        with self._lock:
            if pending:
                return pending.popleft()
        if self._closed:
            raise ShuttingDown(f"server {self._name!r} is closed")
        raise ChannelTimeout(f"server {self._name!r}: no client connected within {timeout}s")

    def on_connection(self, handler: ConnectionHandler) -> None:
        with self._lock:
            self._connection_handlers.append(handler)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client (encoded once); a gone client is
        skipped, and one too far behind is dropped (the servers' ``max_send_buffer``)."""
        try:
            frame = encode_event(event, data, self._max_frame, PER_CONNECTION)
        except CarriesBuffers:  # each client's buffers go its own way (shared memory or not)
            self._emit_buffers(event, data)
            return
        size = len(frame)
        for conn in self._connections():
            try:
                conn.send_broadcast(frame)
            except IpcChannelError as exc:  # closed meanwhile (or dropped): it leaves the list soon
                log.debug("server %r: event %r not sent to %r: %s", self._name, event, conn, exc)
                continue
            self.metrics.record_sent(size)

    def _emit_buffers(self, event: str, data: Any) -> None:
        """``emit`` of an event that carries buffers: encoded for each connection."""
        for conn in self._connections():
            try:
                frame = conn.broadcast_event_frame(event, data)
                conn.send_broadcast(frame)
            except IpcChannelError as exc:
                log.debug("server %r: event %r not sent to %r: %s", self._name, event, conn, exc)
                continue
            self.metrics.record_sent(len(frame))

    def set_handler_names(self, names: list[str]) -> None:
        self._handler_names = list(names)
        for conn in self._connections():
            try:
                conn.announce(names)
            except IpcChannelError as exc:
                log.debug("server %r: could not re-announce to %r: %s", self._name, conn, exc)

    # -- closing -------------------------------------------------------------

    def _begin_close(self) -> Optional[list[StreamChannel]]:
        """Mark the server closed and wake ``accept``; the connections to close, or
        ``None`` if it was closed already."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            conns = list(self._all)
            for conn in self._established:
                if conn not in self._all:
                    conns.append(conn)
        self._wake()
        return conns

    def close(self) -> None:
        """Stop listening, say ``bye`` to every client and close the connections: at
        once those with no request in flight, the others once their requests are
        answered or ``close_grace`` seconds have passed (without waiting for them here).
        Idempotent."""
        conns = self._begin_close()
        if conns is None:
            return
        self._stop_listening()
        self._close_connections(conns)

    def _close_connections(self, conns: list[StreamChannel]) -> None:
        """``close``'s part after the listener stopped: ``bye``, then the closes."""
        busy = []
        for conn in conns:
            if conn.is_connected:
                conn.say_bye()
                # Requests a Peer is handling (Responder's guard); their answers go first.
                if conn.shutdown_state.in_flight:
                    busy.append(conn)
                    continue
            conn.close()
        if busy:
            self._close_when_answered(busy, time.monotonic() + self._close_grace)

    def _close_when_answered(self, busy: list[StreamChannel], deadline: float) -> None:
        """Close each of ``busy`` once nothing is in flight on it, or at ``deadline``.

        A thread of its own: ``close()`` may be called by a handler whose own request
        is one of those in flight. The Qt server does this on its loop instead.
        """

        def close_when_answered() -> None:
            for conn in busy:
                try:
                    conn.shutdown_state.wait_for_drain(max(0.0, deadline - time.monotonic()))
                except ChannelTimeout:
                    log.warning(
                        "server %r: %r still handling a request after %ss; closed",
                        self._name,
                        conn,
                        self._close_grace,
                    )
                conn.wait_written(max(0.0, deadline - time.monotonic()))
                conn.close()

        threading.Thread(
            target=close_when_answered, name=f"aurora-close-{self._name}", daemon=True
        ).start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.connections)} connection(s)"
        return f"<{type(self).__name__} {self._name!r} at {self.address!r}, {state}>"
