"""``QtLocalSocketServer``: a ``QLocalServer`` serving many clients from the Qt event loop.

Each accepted socket becomes a :class:`~aurora_dcc.qt.local_channel.QtLocalSocketChannel`
that joins ``connections`` once its session is open; a client that opens none
within the handshake timeout is dropped. Broadcasts (``emit``) are encoded once
and written to every connection.

Usage (inside a running Qt application)::

    server = QtLocalSocketServer("auroraview_4711", token=token)
    server.on_connection(lambda conn: conn.on_message(handle))   # handle() runs on the Qt thread
    server.emit("selection.changed", {"nodes": ["pCube1"]})      # to every client
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Optional

from qtpy import QtNetwork

from ..errors import IpcChannelError
from ..protocol.framing import DEFAULT_MAX_FRAME
from ..transport.address import AddressInUse, claim_address
from ..transport.stream import StreamChannel, StreamServer
from .compat import QtCore, is_alive, on_qt_main_thread
from .event_loop import Invoker, LoopWaiter, interval_ms, require_app
from .local_channel import QtLocalSocketChannel
from .socket_writer import holding_sends

__all__ = ["QtLocalSocketServer"]

log = logging.getLogger(__name__)

QLocalServer = QtNetwork.QLocalServer


class QtLocalSocketServer(StreamServer):
    """A ``QLocalServer`` serving many clients at once from the Qt event loop.

    It listens on ``resolve_address(name)`` with a user-only socket, after
    taking over a stale socket file (``claim_address``); a live server under the
    same name makes the constructor raise ``AddressInUse``. ``token`` (if given)
    is required in every client's ``hello``; ``handler_names`` are the names announced
    in ``ready``; a client that has not opened its session within
    ``handshake_timeout`` seconds is dropped. Same signature as
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
        )
        self._owner = threading.get_ident()
        self._loop_waiter = LoopWaiter()
        self._invoker = Invoker()
        self._address = claim_address(name)
        server = QLocalServer()
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self._address):
            reason, error = server.errorString(), server.serverError()
            server.deleteLater()
            if error == QtNetwork.QAbstractSocket.SocketError.AddressInUseError:
                raise AddressInUse(
                    f"channel {name!r} at {self._address!r} was taken by another server "
                    f"while starting: {reason}"
                )
            raise IpcChannelError(f"cannot listen on {self._address!r}: {reason}")
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
            )
            if not self._track(conn):
                conn.close()
                continue
            if self._handshake_timeout is not None:
                QtCore.QTimer.singleShot(
                    interval_ms(self._handshake_timeout), lambda c=conn: self._drop_if_silent(c)
                )
            conn.read_pending_bytes()

    def _drop_if_silent(self, conn: QtLocalSocketChannel) -> None:
        if not conn.established and not conn.closed:
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
        for conn in conns:
            conn.close()
        self._stop_listening()
        self._loop_waiter.wake()

    def _stop_listening(self) -> None:
        server = self._server
        if is_alive(server):
            server.close()  # also removes the socket file
            server.deleteLater()
