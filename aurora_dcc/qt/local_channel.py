"""``QtLocalSocketChannel``: one local-socket connection driven by the Qt event loop.

Each connection reads everything available on ``readyRead``, feeds it to its
:class:`StreamSession` (through :class:`StreamChannel`, which holds the protocol
handling, sending and delivery every stream transport shares), and delivers
messages to ``on_message`` handlers on the Qt thread, or into an inbox for
``receive()``. How bytes are written is :mod:`aurora_dcc.qt.socket_writer`'s
part; servers make these channels (:mod:`aurora_dcc.qt.local_server`). The
threading rules are in :mod:`aurora_dcc.qt.local_socket`: Qt thread for the
socket, any thread for ``send``/``receive``/``close``.

Usage (inside a running Qt application)::

    channel = QtLocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
    channel.send(IpcMessage.request("scene.info"))
    channel.receive(timeout=5.0)        # keeps the Qt loop running while it waits
"""

from __future__ import annotations

import contextlib
import logging
import socket as pysocket
import threading
import time
from typing import Any, Callable, Optional, Union

from qtpy import QtNetwork

from ..channel.base import Waitable
from ..errors import ChannelTimeout, Disconnected
from ..protocol.framing import DEFAULT_MAX_FRAME
from ..protocol.message import IpcMessage
from ..transport.address import check_server_uid, is_windows, resolve_address
from ..transport.retry import RetryPolicy, retrying
from ..transport.stream import StreamChannel
from .compat import is_alive, local_socket_error_signal
from .event_loop import Invoker, LoopWaiter, interval_ms, no_op, require_app, sleep_in_loop
from .socket_writer import QtSocketWriter, delivery, holding_sends, push_holding

__all__ = ["QtLocalSocketChannel"]

log = logging.getLogger(__name__)

QLocalSocket = QtNetwork.QLocalSocket
_UNCONNECTED = QLocalSocket.LocalSocketState.UnconnectedState

_READ_BUFFER_SIZE = 1024 * 1024
"""Qt's read buffer per socket; everything in it is taken on each ``readyRead``."""


class QtLocalSocketChannel(StreamChannel):
    """One connection over a ``QLocalSocket``, driven by the Qt event loop.

    Clients get one from :meth:`connect`; a :class:`QtLocalSocketServer` makes
    one per accepted client. Messages go to ``on_message`` handlers, which run
    on the Qt thread, or, while no handler is registered, into an inbox for
    ``receive``/``try_receive``. The ``ready`` that opens the session is
    ``connect()``'s answer (its data is in ``peer_info``); later ones, sent when
    the peer's handler list changes, are delivered. When the connection ends,
    either way, ``shutdown_state`` is shut down (a ``Peer`` fails its pending
    requests at once); then ``send`` raises ``ShuttingDown`` after a local close,
    ``Disconnected`` after the peer left, like ``LocalSocketChannel``.

    The protocol, sending and delivery are :class:`StreamChannel`'s; this class
    reads the socket on ``readyRead``, writes through a :class:`QtSocketWriter`,
    and waits in a local event loop on the Qt thread (on a condition elsewhere).

    Usage::

        with QtLocalSocketChannel.connect("auroraview_4711", timeout=5.0) as channel:
            channel.send(IpcMessage.request("scene.info", id="r1"))
            reply = channel.receive(timeout=5.0)
    """

    delivers_while_waiting = True  # wait_event on the Qt thread keeps the loop running

    def __init__(
        self,
        socket: Any,
        name: str,
        *,
        server: bool,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        capacity: int = 10_000,
        on_established: Optional[Callable[[QtLocalSocketChannel], None]] = None,
        on_closed: Optional[Callable[[QtLocalSocketChannel], None]] = None,
        max_send_buffer: Optional[int] = None,
    ) -> None:
        """Wrap a connected ``socket``; use :meth:`connect` or a server instead
        (``max_send_buffer``: a server connection's output bound, see ``QtSocketWriter``)."""
        super().__init__(
            name,
            server=server,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            list_handler_names=list_handler_names,
            capacity=capacity,
            on_established=on_established,
            on_closed=on_closed,
            on_room=self._resume_reading,
        )
        self._socket = socket
        self._paused = False  # the inbox is full: bytes stay in the socket (backpressure)
        self._owner = threading.get_ident()
        self._loop_waiter = LoopWaiter()
        self._invoker = Invoker()
        self._writer = QtSocketWriter(socket, name, self.metrics, self._invoker, max_send_buffer)
        self._reading = 0  # depth of our readyRead slot: Qt does not re-emit it meanwhile
        self._state.on_shutdown(self._on_shutdown)
        # Bounded, so that while reading is paused Qt stops reading too and the
        # sender is held back by the OS socket buffers instead of our memory.
        socket.setReadBufferSize(_READ_BUFFER_SIZE)
        socket.readyRead.connect(self._on_ready_read)
        socket.disconnected.connect(self._on_disconnected)
        local_socket_error_signal(socket).connect(self._on_error)

    # -- connecting ----------------------------------------------------------

    @classmethod
    def connect(
        cls,
        name: str,
        token: Optional[str] = None,
        timeout: float = 5.0,
        retry: Union[RetryPolicy, int, None] = None,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        capacity: int = 10_000,
    ) -> QtLocalSocketChannel:
        """Connect to the server of channel ``name`` and open the session.

        Same signature and rules as ``LocalSocketChannel.connect``: sends
        ``hello`` (with ``token``) and waits up to ``timeout`` seconds for the
        server's ``ready``, running the Qt loop meanwhile. Raises
        ``Unauthorized`` / ``UnsupportedProtocol`` when refused, ``ChannelTimeout``
        when the server does not answer, ``Disconnected`` when nobody serves
        ``name`` after the attempts of ``retry`` (a ``RetryPolicy``, a number of
        attempts, or ``None`` for one; back-off waits keep the Qt loop running).

        A server whose backlog stays full (it accepts nobody) within ``timeout`` is
        ``ChannelTimeout``; a server run by another user is ``UntrustedServer`` (nothing
        is sent to it); a name no server could use is ``InvalidChannelName``.
        """
        require_app()
        address = resolve_address(name)

        def attempt() -> QtLocalSocketChannel:
            socket = _connected_socket(name, address, timeout)
            channel = cls(
                socket,
                name,
                server=False,
                token=token,
                max_frame=max_frame,
                peer_name=peer_name,
                capacity=capacity,
            )
            channel._handshake(timeout, f"the server of {name!r}")
            return channel

        return retrying(retry, attempt, name, sleep=sleep_in_loop)

    def _wait_settled(self, timeout: float) -> bool:
        self._writer.push()  # the hello
        return self._loop_waiter.wait(lambda: self._open or self._closed, timeout)

    def _opened(self) -> None:
        self._loop_waiter.wake()  # connect() waits for this

    # -- properties ------------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the session is open (the handshake is done)."""
        return self._session.established

    @property
    def closed(self) -> bool:
        """True once the connection is closed, by either side."""
        return self._closed

    # -- sending -------------------------------------------------------------

    def _write_frames(self, data: bytes, count: int) -> None:
        self._writer.send(data, count)

    def send_broadcast(self, frame: bytes) -> None:
        if self._closed:
            raise self._closed_error()
        self._writer.send_broadcast(frame)  # drops this client if it fell too far behind

    def _write_output(self) -> None:
        # Protocol output (ready, pong, error replies) is not counted as sent; inside
        # our slot it goes out with the slot's write, else with the next push.
        out = self._session.take_output()
        if out:
            self._writer.hold(out)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """On the Qt thread: hold what this thread sends on any connection and write it
        when the block ends (see ``IpcChannel.batch``). Other threads' sends are
        written together anyway, by the Qt thread."""
        if threading.get_ident() != self._owner:
            return contextlib.nullcontext()
        return holding_sends()

    # -- receiving -------------------------------------------------------------

    def _next_message(self, timeout: Optional[float]) -> Optional[IpcMessage]:
        inbox = self._inbox
        waited = False
        while True:
            with inbox.lock:
                if inbox.messages:
                    return inbox.pop()  # may resume reading (see _resume_reading)
                if inbox.closed:
                    raise Disconnected(inbox.reason)
            if waited or timeout == 0.0:
                return None
            waited = True
            self._wait_for_message(timeout)

    def _wait_for_message(self, timeout: Optional[float]) -> None:
        inbox = self._inbox
        if threading.get_ident() == self._owner:
            self._loop_waiter.wait(
                lambda: bool(inbox.messages) or inbox.closed, timeout, self._poll_for()
            )
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with inbox.lock:
            while not inbox.messages and not inbox.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                inbox.wait(remaining)

    def _resume_reading(self) -> None:
        # Under the inbox's lock, on the thread that made room: only schedule the read.
        self._paused = False
        self._invoker.call_soon(self._on_ready_read)

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event``; on the Qt thread the loop keeps delivering meanwhile."""
        if threading.get_ident() != self._owner:
            return event.wait(timeout)
        # The event may be set by another thread, so the wait also polls.
        poll = self._poll_for() or no_op
        return self._loop_waiter.wait(event.is_set, timeout, poll)

    def _poll_for(self) -> Optional[Callable[[], None]]:
        # Inside our own readyRead slot Qt will not signal this socket again:
        # a nested wait has to read by itself.
        return self._read_available if self._reading else None

    def _message_handlers_changed(self) -> None:
        # Messages that arrived before the first handler go to it, on the Qt thread.
        if self._message_handlers and self._inbox.messages:
            self._invoker.call_soon(self._drain_inbox_to_handlers)

    # -- the Qt side: signals --------------------------------------------------

    def read_pending_bytes(self) -> None:
        """Handle what arrived before this channel was connected to ``readyRead``
        (a server calls it for each new socket: Qt does not signal those bytes again)."""
        if self._socket.bytesAvailable():
            self._on_ready_read()

    def _on_ready_read(self) -> None:
        if not delivery.depth:
            delivery.generation += 1
        delivery.depth += 1
        self._reading += 1
        try:
            self._read_available(signalled=True)
        finally:
            self._reading -= 1
            delivery.depth -= 1
        for failure in push_holding():  # one write per connection for what handlers sent
            log.warning("%s", failure)

    def _read_available(self, force: bool = False, signalled: bool = False) -> None:
        """Read and handle what Qt has buffered. ``signalled``: from our ``readyRead``
        slot, where the socket is open and has data (no need to ask Qt)."""
        socket = self._socket
        if self._paused and not force:
            return
        # Otherwise bytesAvailable() first: readAll() on a closed socket makes Qt warn.
        if not signalled and (not is_alive(socket) or not socket.bytesAvailable()):
            return
        data = socket.readAll().data()
        if not data:
            return
        session = self._session
        if session.must_close:
            return  # closing: what still arrives is discarded, not buffered
        messages = self._feed(data)
        if session.must_close:
            self._log_refusal()
            self._writer.hang_up()
            self._mark_closed()
        if messages:
            self._hand_over(messages)

    def _hand_over(self, messages: list[IpcMessage]) -> None:
        """To the message handlers if there are any, else into the inbox."""
        if self._message_handlers:
            messages = self._deliver(messages)
            if self._loop_waiter.waiting:
                self._loop_waiter.wake()
            if not messages:
                return
        inbox = self._inbox
        with inbox.lock:
            inbox.put_all(messages)
            if inbox.full:
                self._paused = True  # resumed once receive() has taken half
                inbox.want_room()
        self._loop_waiter.wake()

    def _log_refusal(self) -> None:
        session = self._session
        if session.refusal is not None:
            log.warning("channel %r: the server refused: %s", self._name, session.refusal)
        elif session.established:
            log.warning("channel %r: frame over %d bytes; closing", self._name, session.max_frame)
        else:
            log.warning("channel %r: session refused (token or protocol); closing", self._name)

    def _on_disconnected(self) -> None:
        if not self._closed:
            self._read_available(force=True)  # whatever arrived before the hang-up
        self._mark_closed()
        if is_alive(self._socket):
            self._socket.deleteLater()

    def _on_error(self, *_args: object) -> None:
        socket = self._socket
        if is_alive(socket) and socket.state() == _UNCONNECTED and not self._closed:
            log.debug("channel %r: socket error: %s", self._name, socket.errorString())
            self._on_disconnected()

    # -- closing -------------------------------------------------------------

    def _on_shutdown(self) -> None:
        if not self._closed:
            self._closed_locally = True
        if threading.get_ident() == self._owner:
            self._teardown()
            return
        self._closed = True  # sending is over at once; the Qt thread writes what is queued
        self._writer.stop_direct_writes()
        self._inbox.close(f"channel {self._name!r} is closed")  # waiters elsewhere see it now
        self._invoker.call_soon(self._teardown)

    def _teardown(self) -> None:
        self._writer.write_queued()
        self._writer.hang_up()
        self._mark_closed()

    def _mark_closed(self) -> None:
        """Qt thread: the connection is over; wake waiters, tell the server, shut down."""
        self._closed = True
        self._writer.stop_direct_writes()
        self._inbox.close(f"channel {self._name!r} is closed")
        self._loop_waiter.wake()
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed(self)
        self._state.shutdown()  # idempotent: callbacks (a Peer failing requests) run once


def _connected_socket(name: str, address: str, timeout: float) -> Any:
    """A ``QLocalSocket`` connected to ``address`` and served by this user.

    Raises ``Disconnected`` if nobody serves it, ``ChannelTimeout`` if the server's
    backlog stayed full for ``timeout`` seconds (the connect is retried until then),
    ``UntrustedServer`` if another user's process serves it (nothing is sent).
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        socket = QLocalSocket()
        socket.connectToServer(address)
        # A local connect completes or fails at once; one that stays "connecting" met a
        # full backlog (EAGAIN), which Qt does not reliably retry: try again ourselves.
        left = deadline - time.monotonic()
        if socket.waitForConnected(interval_ms(min(max(left, 0.001), 0.05))):
            break
        reason, still_trying = socket.errorString(), socket.state() != _UNCONNECTED
        socket.abort()
        socket.deleteLater()
        if not still_trying:
            raise Disconnected(f"cannot connect to channel {name!r} at {address!r}: {reason}")
        left = deadline - time.monotonic()
        if left <= 0.0:
            raise ChannelTimeout(
                f"the server of channel {name!r} at {address!r} accepted no connection "
                f"within {timeout} s (its backlog stayed full)"
            )
        sleep_in_loop(min(pause, left))
        pause = min(pause * 2, 0.05)
    if not is_windows():
        # A dup of Qt's descriptor, only to read the peer's credentials.
        probe = pysocket.fromfd(
            int(socket.socketDescriptor()), pysocket.AF_UNIX, pysocket.SOCK_STREAM
        )
        try:
            check_server_uid(probe, name)
        except BaseException:
            socket.abort()
            socket.deleteLater()
            raise
        finally:
            probe.close()
    return socket
