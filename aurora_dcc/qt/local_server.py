"""``QtLocalSocketServer``: a ``QLocalServer`` serving many clients from the Qt event loop.

Each accepted socket becomes a :class:`~aurora_dcc.qt.local_channel.QtLocalSocketChannel`
that joins ``connections`` once its session is open; a client that opens none
within the handshake timeout is dropped. That timeout counts only time the
server could read: when its timer fires late (the Qt thread was busy), what
the client sent meanwhile is read first, and the time the loop was blocked is
granted again; bytes the client sent that the loop has not read yet (its
socket notifiers did not run) grant a little more. Broadcasts (``emit``) are
encoded once and written to every connection, each of which holds at most
``max_send_buffer`` bytes for its client (see :mod:`~aurora_dcc.qt.socket_writer`).
``close()`` says ``bye`` and returns at once; a connection with requests in
flight closes once they are answered, or ``close_grace`` seconds later, on the
Qt loop (docs/design/threading.md).

Usage (inside a running Qt application)::

    server = QtLocalSocketServer("auroraview_4711", token=token)
    server.on_connection(lambda conn: conn.on_message(handle))   # handle() runs on the Qt thread
    server.emit("selection.changed", {"nodes": ["pCube1"]})      # to every client
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from typing import Any, Callable, Optional

from qtpy import QtNetwork

from ..errors import IpcChannelError
from ..protocol.framing import DEFAULT_MAX_FRAME
from ..transport.address import AddressInUse, claim_address, is_windows
from ..transport.listener import bind_user_only
from ..transport.socket_write import DEFAULT_MAX_SEND_BUFFER
from ..transport.stream import StreamChannel
from ..transport.stream_server import DEFAULT_CLOSE_GRACE, StreamServer
from .compat import QtCore, is_alive, on_qt_main_thread
from .event_loop import Invoker, LoopWaiter, interval_ms, require_app
from .local_channel import QtLocalSocketChannel
from .socket_writer import holding_sends

__all__ = ["QtLocalSocketServer"]

log = logging.getLogger(__name__)

QLocalServer = QtNetwork.QLocalServer
_LATE = 0.25
"""A handshake timer this many seconds late means the Qt loop was blocked meanwhile
(more than a coarse timer's slack on short timeouts)."""
_BACKLOG = 50  # what QLocalServer.listen(name) asks of the kernel
_UNREAD_GRACE = 0.25
"""Seconds granted again to a client in its handshake whose bytes the loop has not read."""
_CLOSE_POLL_MS = 20
"""A closing server looks this often whether its busy connections' requests are answered."""


class QtLocalSocketServer(StreamServer):
    """A ``QLocalServer`` serving many clients at once from the Qt event loop.

    It claims ``name`` (``claim_address``: a lock held while it runs), binds a
    user-only socket itself and listens on that descriptor; a live server under
    the same name makes the constructor raise ``AddressInUse``. ``token`` (if given)
    is required in every client's ``hello``; ``handler_names`` are the names announced
    in ``ready``; a client that has not opened its session within
    ``handshake_timeout`` seconds (of time the Qt loop ran) is dropped; one
    that falls ``max_send_buffer`` bytes behind is dropped too; ``close()`` gives
    requests in flight ``close_grace`` seconds to be answered. Same signature as
    ``LocalSocketChannelServer``. Each connection is a :class:`QtLocalSocketChannel`.
    The bookkeeping, ``accept`` and broadcasts are :class:`StreamServer`'s; this
    class listens, and waits in a local event loop on the Qt thread.

    Usage::

        with QtLocalSocketServer("auroraview_4711", handler_names=["scene.info"]) as server:
            server.on_connection(lambda conn: conn.on_message(lambda msg: serve(conn, msg)))
            conn = server.accept(timeout=5.0)      # the Qt loop keeps running meanwhile
            server.emit("scene.saved", {"path": "/shots/a.ma"})
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
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        require_app()
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
        self._max_send_buffer = max_send_buffer
        self._closing: list[tuple[Any, float, list[StreamChannel]]] = []  # close()'s timers
        self._owner = threading.get_ident()
        self._loop_waiter = LoopWaiter()
        self._invoker = Invoker()
        # Claim (lock) first, then listen on a socket bound here: QLocalServer.listen(name)
        # would replace a live server's file, and its close() would delete whatever file
        # has the name by then; one listening on our descriptor does neither.
        self._claim = claim_address(name)
        self._address = self._claim.address
        server = QLocalServer()
        try:
            if is_windows():
                server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
                listening = server.listen(self._address)
            else:
                sock = bind_user_only(self._address, name)
                try:
                    self._claim.mark_socket()
                    sock.listen(_BACKLOG)
                except BaseException:
                    sock.close()
                    raise
                listening = server.listen(sock.detach())  # Qt owns the descriptor now
            if not listening:
                reason, error = server.errorString(), server.serverError()
                if error == QtNetwork.QAbstractSocket.SocketError.AddressInUseError:
                    raise AddressInUse(
                        f"channel {name!r} at {self._address!r} was taken by another server "
                        f"while starting: {reason}"
                    )
                raise IpcChannelError(f"cannot listen on {self._address!r}: {reason}")
        except BaseException:
            server.close()
            server.deleteLater()
            self._claim.release()
            raise
        server.newConnection.connect(self._on_new_connection)
        self._server = server

    @property
    def address(self) -> str:
        return self._address

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """On the Qt thread: hold emits and write them at the block's end (``IpcServer.batch``)."""
        if not on_qt_main_thread():
            return contextlib.nullcontext()
        return holding_sends()

    # -- waiting ---------------------------------------------------------------

    def _wait(self, done: Callable[[], bool], timeout: Optional[float]) -> bool:
        if threading.get_ident() == self._owner:
            return self._loop_waiter.wait(done, timeout)  # new clients arrive through the loop
        return super()._wait(done, timeout)

    def _wake(self) -> None:
        super()._wake()
        if threading.get_ident() == self._owner:
            self._loop_waiter.wake()  # other threads' changes reach it through _finish_close

    # -- the Qt side -----------------------------------------------------------

    def _on_new_connection(self) -> None:
        server = self._server
        while server.hasPendingConnections():
            socket = server.nextPendingConnection()
            if socket is None:
                break
            conn = QtLocalSocketChannel(
                socket,
                f"{self._name}#{next(self._counter)}",
                server=True,
                token=self._token,
                max_frame=self._max_frame,
                peer_name=self._peer_name,
                list_handler_names=self._current_handler_names,
                capacity=self._capacity,
                on_established=self._connection_opened,
                on_closed=self._connection_closed,
                max_send_buffer=self._max_send_buffer,
            )
            if not self._track(conn):
                conn.close()
                continue
            if self._handshake_timeout is not None:
                self._watch_handshake(conn, socket, self._handshake_timeout)
            conn.read_pending_bytes()

    def _watch_handshake(self, conn: QtLocalSocketChannel, socket: Any, seconds: float) -> None:
        """Drop ``conn`` if its session is not open after ``seconds`` of a running loop."""
        due = time.monotonic() + seconds
        QtCore.QTimer.singleShot(
            interval_ms(seconds), lambda: self._drop_if_silent(conn, socket, due)
        )

    def _drop_if_silent(self, conn: QtLocalSocketChannel, socket: Any, due: float) -> None:
        if conn.established or conn.closed:
            return
        conn.read_pending_bytes()  # the hello may be waiting: the loop could not read it
        late = time.monotonic() - due
        if conn.established or conn.closed:
            return
        if late > _LATE:
            # The loop was blocked (a busy handler): what the client sent meanwhile may
            # still be in the OS buffer, unread. Grant the time the server could not read.
            self._watch_handshake(conn, socket, late)
            return
        if _unread_by_qt(socket):
            # On time, but the loop ran without its socket notifiers (a nested
            # processEvents(ExcludeSocketNotifiers), or this timer went first).
            self._watch_handshake(conn, socket, _UNREAD_GRACE)
            return
        log.warning("server %r: %r opened no session in time; dropped", self._name, conn)
        conn.close()  # counted as an error by _connection_closed

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Stop listening, close every connection, remove the socket file. Idempotent.

        From another thread ``accept`` is woken at once; the Qt thread does the rest.
        """
        conns = self._begin_close()
        if conns is None:
            return
        if threading.get_ident() != self._owner:
            self._invoker.call_soon(lambda: self._finish_close(conns))
            return
        self._finish_close(conns)

    def _finish_close(self, conns: list[StreamChannel]) -> None:
        self._stop_listening()
        self._close_connections(conns)
        if not self._closing:
            self._delete_listener()
        self._loop_waiter.wake()

    def _close_when_answered(self, busy: list[StreamChannel], deadline: float) -> None:
        """On the Qt loop: the requests in flight run on this thread (below us on the
        stack, or in later slots), so waiting here would wait for them in vain."""
        timer = QtCore.QTimer()
        entry = (timer, deadline, busy)
        timer.timeout.connect(lambda: self._close_answered(entry))
        self._closing.append(entry)
        timer.start(_CLOSE_POLL_MS)

    def _close_answered(self, entry: tuple[Any, float, list[StreamChannel]]) -> None:
        timer, deadline, busy = entry
        overdue = time.monotonic() >= deadline
        for conn in list(busy):
            if conn.shutdown_state.in_flight and not overdue:
                continue
            if conn.shutdown_state.in_flight:
                log.warning(
                    "server %r: %r still handling a request after %ss; closed",
                    self._name,
                    conn,
                    self._close_grace,
                )
            busy.remove(conn)
            conn.close()
        if not busy:
            timer.stop()
            self._closing.remove(entry)
            if not self._closing:
                self._delete_listener()

    def _stop_listening(self) -> None:
        server = self._server
        if is_alive(server):
            server.close()  # removes only the staging path it was bound at (never ours)
        self._claim.release()  # our socket file (by inode), then the lock

    def _delete_listener(self) -> None:
        """Once no connection is left open: the sockets it accepted are its children."""
        if is_alive(self._server):
            self._server.deleteLater()


def _unread_by_qt(socket: Any) -> bool:
    """Whether the OS holds bytes from ``socket``'s peer that Qt has not read yet."""
    if is_windows() or not is_alive(socket):
        return False
    descriptor = int(socket.socketDescriptor())
    if descriptor < 0:
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLIN)
    return bool(poller.poll(0))
