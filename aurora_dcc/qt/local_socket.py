"""The Qt side of the local-socket transport: ``QLocalServer``/``QLocalSocket`` on Qt's loop.

A DCC runs a Qt event loop on its main thread; this transport is driven by it
(no threads of its own). Each connection reads everything available on
``readyRead``, feeds it to its :class:`StreamSession` (the protocol rules), writes
what the session owes, and delivers messages to ``on_message`` handlers on the
Qt thread, or into an inbox for ``receive()``. It speaks PROTOCOL.md, so the
other end may be this class, the pure-Python ``LocalSocketChannel``, or any
client written from the protocol page.

Writing: a send outside our slots is written at once. What handlers send while
a slot delivers is held and written when it returns (one write per connection
per batch); a long burst is written every 64 KiB as it goes, and if the handler
runs an event loop (a dialog, a nested wait) what it sent is written then. Bytes
go straight to the socket's descriptor while Qt has none queued (Qt's own write
path costs event-loop wake-ups per message); what the OS does not take at once
is queued in Qt, which writes it as the peer reads.

Usage (inside a running Qt application)::

    server = QtLocalSocketServer("auroraview_4711", token=token)
    server.on_connection(lambda conn: conn.on_message(handle))   # handle() runs on the Qt thread
    server.emit("selection.changed", {"nodes": ["pCube1"]})      # to every client

    channel = QtLocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
    channel.send(IpcMessage.request("scene.info"))
    channel.receive(timeout=5.0)        # keeps the Qt loop running while it waits

Threads: the Qt objects belong to the thread that created them, which should
run a Qt event loop (normally the main thread; on a thread without one, bytes
are read only while a blocking wait runs there). ``send``, ``emit``, ``close``
and ``receive`` may be called from any thread; from other threads the bytes
are handed to the Qt thread. A blocking wait (``receive``, ``wait_event``,
``accept``, ``connect``) on the Qt thread runs a local event loop, so the reply
it waits for can still be delivered; on any other thread it waits on a
condition.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from qtpy import QtNetwork

from ..channel.base import IpcChannel, Waitable
from ..channel.metrics import IpcChannelMetrics
from ..channel.server import ConnectionHandler, IpcServer
from ..errors import ChannelTimeout, Disconnected, IpcChannelError, SendFailed, ShuttingDown
from ..protocol.framing import DEFAULT_MAX_FRAME, encode_event, encode_frame
from ..protocol.message import IpcMessage, IpcMessageType
from ..transport.address import AddressInUse, claim_address, resolve_address
from ..transport.connection import StreamSession
from ..transport.retry import RetryPolicy, retrying
from .compat import (
    QtCore,
    Signal,
    app_instance,
    is_alive,
    local_socket_error_signal,
    on_qt_main_thread,
)

__all__ = ["QtLocalSocketChannel", "QtLocalSocketServer"]

log = logging.getLogger(__name__)

QLocalServer = QtNetwork.QLocalServer
QLocalSocket = QtNetwork.QLocalSocket
_CONNECTED = QLocalSocket.LocalSocketState.ConnectedState
_EVENT = IpcMessageType.EVENT
_READY = IpcMessageType.READY
_UNCONNECTED = QLocalSocket.LocalSocketState.UnconnectedState

_POLL_MS = 2
"""Poll interval of a Qt-thread wait that cannot rely on a signal to wake it (see _Waiter)."""
_CLOSE_GRACE_MS = 2000
"""How long a closing socket may take to write what is still buffered before it is aborted."""
_READ_BUFFER_SIZE = 1024 * 1024
"""Qt's read buffer per socket; everything in it is taken on each ``readyRead``."""
_HOLD_BYTES = 32 * 1024
"""Inside our ``readyRead`` slot, sends are held and written together, up to this many bytes
(64 KiB measured slower here: the held bytes and their join fall out of the CPU caches)."""
_HOLD_SECONDS = 0.002
"""...or until the oldest held byte is this old when the next send comes."""


def _direct_writes_possible() -> bool:
    """True if bytes may be written on a ``QLocalSocket``'s descriptor with ``os.write``.

    Not on Windows (there the descriptor is a pipe handle), and only while
    SIGPIPE is ignored (as Python and Qt set it up), so a write to a peer that
    has just gone fails with EPIPE instead of killing the host application.
    """
    return os.name != "nt" and signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


def _writable_descriptor(socket: Any) -> int:
    """The descriptor to write on directly, or -1 (see ``_direct_writes_possible``).

    Only a non-blocking one (as Qt sets them up): a write must never block the Qt thread.
    """
    if not _direct_writes_possible():
        return -1
    fd = int(socket.socketDescriptor())
    try:
        return fd if fd >= 0 and not os.get_blocking(fd) else -1
    except OSError:
        return -1


class _Delivery(threading.local):
    """Per thread: how many of our ``readyRead`` slots are running, and who holds bytes.

    While one runs, a connection writes the first frame a handler sends at
    once (a reply: no wait for the slot to return), and holds what follows,
    writing it when the slot returns: a burst, or a broadcast to many clients,
    costs one write per connection per batch instead of one per message.
    ``generation`` counts the outermost slot runs (which frame is a first);
    ``batches`` counts ``batch()`` blocks, in which every frame is held.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.generation = 0
        self.batches = 0
        self.holding: list[QtLocalSocketChannel] = []


_delivery = _Delivery()


@contextlib.contextmanager
def _holding_sends() -> Iterator[None]:
    """Hold what this thread's connections send, as our ``readyRead`` slot does, and
    write it when the outermost block ends (``batch()``); raises the first failure."""
    delivery = _delivery
    delivery.depth += 1
    delivery.batches += 1
    try:
        yield
    finally:
        delivery.batches -= 1
        delivery.depth -= 1
        if not delivery.depth:
            failures = _push_holding()
            for extra in failures[1:]:
                log.warning("%s", extra)
            if failures:
                raise failures[0]


def _push_holding() -> list[SendFailed]:
    """Write what this thread's connections hold, every one even after a failure;
    returns the failures (each counted in its connection's metrics)."""
    failures: list[SendFailed] = []
    holding = _delivery.holding
    while holding:
        conn = holding.pop()
        try:
            conn._push()
        except SendFailed as exc:
            conn.metrics.record_error()
            failures.append(exc)
    return failures


def _require_app() -> None:
    if app_instance() is None:
        raise IpcChannelError(
            "the Qt local-socket transport needs a QCoreApplication (or QApplication); "
            "create one first, or use aurora_dcc.transport.local_socket outside Qt"
        )


class _Invoker(QtCore.QObject):
    """Runs callables on the thread that made it, through that thread's event loop.

    ``call_soon(fn)`` may be called from any thread. Cross-thread ``send`` puts
    bytes in a locked buffer and asks for *one* call when the buffer goes from
    empty to non-empty; the Qt thread then writes the whole buffer at once.

    Why a queued signal connected to a plain function: measured from a worker
    thread to the Qt thread and back (PySide6 6.11), it took 19 us where a
    ``postEvent`` to an ``event()`` override took 28 us (a QEvent made in
    Python, and every event of the object passing through Python). A slot
    method instead of the function costs more again: PySide looks it up on
    each call. The function is connected here, on the thread the calls are
    for: its queued calls run there whether the binding gives its hidden
    receiver the sender's thread (PySide6) or the thread of ``connect()``.
    """

    call_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        calls: deque[Callable[[], None]] = deque()  # append/popleft are atomic
        self._calls = calls

        def run_next() -> None:  # one signal per call
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("queued call %r failed", fn)

        self.call_requested.connect(run_next, QtCore.Qt.ConnectionType.QueuedConnection)
        self._request = self.call_requested.emit

    def call_soon(self, fn: Callable[[], None]) -> None:
        if not is_alive(self):
            return  # torn down: nothing is left to run it for
        self._calls.append(fn)
        self._request()


class _LocalLoop:
    """A ``QEventLoop`` with its timeout and poll timers, made once and reused.

    Creating the loop and timers and connecting their signals cost more than
    the rest of a round trip, so a waiter keeps them between waits.
    """

    def __init__(self) -> None:
        self.loop = QtCore.QEventLoop()
        self.timer = QtCore.QTimer()
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._on_timeout)
        self.poller = QtCore.QTimer()
        self.poller.timeout.connect(self._on_poll)
        self.timed_out = False
        self.done: Callable[[], bool] = _never
        self.poll: Callable[[], None] = _nothing

    def run(
        self, done: Callable[[], bool], timeout: Optional[float], poll: Optional[Callable[[], None]]
    ) -> None:
        self.done, self.timed_out = done, False
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout is not None:
            self.timer.start(_ms(timeout))
        if poll is not None:
            self.poll = poll
            self.poller.start(_POLL_MS)
        try:
            while not done() and not self.timed_out:
                if self.loop.exec() < 0:
                    # The application is quitting: Qt starts no nested loop until its
                    # own exec() returns. Process events by hand, honouring the timeout.
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    _process_events_briefly()
                    self.poll()
        finally:
            if timeout is not None:
                self.timer.stop()
            if poll is not None:
                self.poller.stop()
            self.done, self.poll = _never, _nothing

    def _on_timeout(self) -> None:
        self.timed_out = True
        self.loop.quit()

    def _on_poll(self) -> None:
        self.poll()
        if self.done():
            self.loop.quit()


class _Waiter:
    """Blocks a caller until ``done()`` holds, without stalling the owner thread's Qt loop.

    On the owner (Qt) thread it runs a local ``QEventLoop`` that ``wake()`` quits
    whenever the state may have changed; ``poll`` (if given) runs every few
    milliseconds meanwhile, for conditions no signal reports (an event set by
    another thread, data on a socket whose ``readyRead`` Qt does not re-emit
    while its own slot is running). On other threads it waits on ``cond``.
    """

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.cond = threading.Condition()
        self._running: list[_LocalLoop] = []
        self._spare: list[_LocalLoop] = []  # waits nest, so there may be several

    def wait(
        self,
        done: Callable[[], bool],
        timeout: Optional[float],
        poll: Optional[Callable[[], None]] = None,
    ) -> bool:
        if done():
            return True
        if threading.get_ident() != self.owner:
            with self.cond:
                return self.cond.wait_for(done, timeout)
        local = self._spare.pop() if self._spare else _LocalLoop()
        self._running.append(local)
        try:
            local.run(done, timeout, poll)
        finally:
            self._running.remove(local)
            self._spare.append(local)
        return done()

    @property
    def waiting(self) -> bool:
        return bool(self._running)

    def wake(self) -> None:
        """Re-check waiters (call on the owner thread after a state change)."""
        with self.cond:
            self.cond.notify_all()
        for local in self._running:
            local.loop.quit()


class QtLocalSocketChannel(IpcChannel):
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
    ) -> None:
        """Wrap a connected ``socket``; use :meth:`connect` or a server instead."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        super().__init__(name)
        self._socket = socket
        self._capacity = capacity
        self._paused = False  # the inbox is full: bytes stay in the socket (backpressure)
        self._session = StreamSession(
            server=server,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            list_handler_names=list_handler_names,
            metrics=self.metrics,
        )
        self._on_established = on_established
        self._on_closed = on_closed
        self._owner = threading.get_ident()
        self._waiter = _Waiter(self._owner)
        self._invoker = _Invoker()
        self._inbox: deque[IpcMessage] = deque()
        self._pending: deque[IpcMessage] = deque()  # decoded, not yet given to handlers
        self._outgoing: list[bytes] = []  # frames sent from other threads
        self._outgoing_lock = threading.Lock()
        self._reading = 0  # depth of our readyRead slot: Qt does not re-emit it meanwhile
        # Qt thread: bytes not yet written (see _write); the timer writes them if an
        # event loop runs before our slot returns (a handler's modal dialog, a nested wait).
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._held_since = 0.0
        self._push_timer = QtCore.QTimer()
        self._push_timer.setSingleShot(True)
        self._push_timer.setInterval(0)
        self._push_timer.timeout.connect(self._push_logging_failure)
        self._push_timer_armed = False
        self._first_sent = -1  # the _Delivery generation whose first frame was written at once
        self._fd = _writable_descriptor(socket)
        self._qt_queued = False  # bytes were handed to Qt's write buffer (maybe still there)
        self._closed = False
        self._closed_locally = False  # by close()/shutdown(), not by the peer leaving
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
        """
        _require_app()
        address = resolve_address(name)
        return retrying(
            retry,
            lambda: cls._connect_once(
                name, address, token, timeout, max_frame, peer_name, capacity
            ),
            name,
            sleep=_sleep_in_loop,
        )

    @classmethod
    def _connect_once(
        cls,
        name: str,
        address: str,
        token: Optional[str],
        timeout: float,
        max_frame: int,
        peer_name: Optional[str],
        capacity: int,
    ) -> QtLocalSocketChannel:
        deadline = time.monotonic() + timeout
        socket = QLocalSocket()
        socket.connectToServer(address)
        # A local connect completes at once or fails at once; waiting for it is harmless.
        if not socket.waitForConnected(_ms_left(deadline)):
            reason = socket.errorString()
            socket.abort()
            socket.deleteLater()
            raise Disconnected(f"cannot connect to channel {name!r} at {address!r}: {reason}")
        channel = cls(
            socket,
            name,
            server=False,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            capacity=capacity,
        )
        session = channel._session
        session.start()
        channel._write(session.take_output())
        channel._push()
        channel._waiter.wait(
            lambda: session.established or channel._closed, max(0.0, deadline - time.monotonic())
        )
        if session.established:
            return channel
        hung_up = channel._closed
        channel.close()
        if session.refusal is not None:
            raise session.refusal_exception()
        if hung_up:
            raise Disconnected(f"the server of {name!r} closed the connection during hello")
        raise ChannelTimeout(f"no ready from the server of {name!r} within {timeout}s")

    # -- properties ------------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the session is open (the handshake is done)."""
        return self._session.established

    @property
    def peer_info(self) -> dict[str, object]:
        """Data of the peer's latest ``hello`` or ``ready``."""
        return self._session.peer_info

    @property
    def closed(self) -> bool:
        """True once the connection is closed, by either side."""
        return self._closed

    # -- sending -------------------------------------------------------------

    def send(self, msg: IpcMessage) -> None:
        """Send ``msg``; never blocks the Qt loop (the socket buffers).

        Raises ``MessageTooLarge`` over the frame limit, ``ShuttingDown`` after
        ``close()``, ``Disconnected`` after the peer left.
        """
        self.send_frame(encode_frame(msg, self._session.max_frame))

    def emit(self, event: str, data: Any = None) -> None:
        """Send an ``event`` message named ``event`` (as ``send`` does)."""
        self.send_frame(encode_event(event, data, self._session.max_frame))

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """On the Qt thread: hold what this thread sends on any connection and write it
        when the block ends (see ``IpcChannel.batch``). Other threads' sends are
        written together anyway, by the Qt thread."""
        if threading.get_ident() != self._owner:
            return contextlib.nullcontext()
        return _holding_sends()

    def send_frame(self, frame: bytes) -> None:
        """Send an already encoded frame (``emit`` to many connections encodes once)."""
        if self._closed:
            if self._closed_locally:
                raise ShuttingDown(f"channel {self._name!r} is closed: message not sent")
            raise Disconnected(f"channel {self._name!r}: the connection is closed")
        if threading.get_ident() == self._owner:
            held = self._held
            delivery = _delivery
            if not delivery.depth:
                if held:  # keep the order behind anything still held
                    self._write(frame)
                    self._push()
                else:
                    self._write_now(frame)
            elif not held and self._first_sent != delivery.generation and not delivery.batches:
                self._first_sent = delivery.generation  # see _Delivery
                self._write_now(frame)
            elif held:
                # Inside a readyRead slot of ours (a handler is sending, maybe to several
                # connections): the slot writes when it returns; a long burst as it goes.
                held.append(frame)
                self._held_bytes += len(frame)
                if (
                    self._held_bytes >= _HOLD_BYTES
                    or time.monotonic() - self._held_since >= _HOLD_SECONDS
                ):
                    self._push()
            else:
                self._write(frame)
            self.metrics.record_sent(len(frame))
            return
        with self._outgoing_lock:
            outgoing = self._outgoing
            outgoing.append(frame)
            self.metrics.record_sent(len(frame))
            first = len(outgoing) == 1
        if first:
            self._invoker.call_soon(self._flush_outgoing)

    def _write(self, data: bytes) -> None:
        """Qt thread: hold ``data`` for the next ``_push`` (which keeps the order of all writes)."""
        if not data:
            return
        held = self._held
        if not held:
            self._held_since = time.monotonic()
            delivery = _delivery
            if delivery.depth:
                delivery.holding.append(self)
                if not self._push_timer_armed:
                    self._push_timer_armed = True
                    self._push_timer.start()
        held.append(data)
        self._held_bytes += len(data)

    def _push(self) -> None:
        """Qt thread: write what is held, without blocking.

        Straight to the descriptor when Qt has nothing queued: a write through
        ``QLocalSocket`` arms and disarms Qt's write notifier, which costs event
        dispatcher wake-ups and a loop iteration per reply (more than the rest
        of a round trip). What the OS does not take at once is queued in Qt,
        which writes it when the socket is writable (and reports any error).
        """
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._held_bytes = 0
        try:
            self._write_now(data)
        finally:
            if self._push_timer_armed:  # after the write: not on the reply's way out
                self._push_timer_armed = False
                self._push_timer.stop()

    def _write_now(self, data: bytes) -> None:
        socket = self._socket
        if not is_alive(socket):
            return
        fd = self._fd
        if self._qt_queued and not socket.bytesToWrite():
            self._qt_queued = False
        # Qt closes the descriptor only when it closes the socket, and then tells
        # us at once (disconnected -> _mark_closed, on this thread): while the
        # channel is open, the descriptor is still this socket's.
        if fd >= 0 and not self._qt_queued and not self._closed:
            try:
                written = os.write(fd, data)
            except OSError:  # full (EAGAIN), or gone: Qt's write reports the error
                written = 0
            if written == len(data):
                return
            data = data[written:]
        if socket.write(data) < 0:
            raise SendFailed(f"channel {self._name!r}: write failed: {socket.errorString()}")
        self._qt_queued = True
        socket.flush()

    def _flush_outgoing(self) -> None:
        """Qt thread: write what other threads sent (also when a close is pending)."""
        with self._outgoing_lock:
            data = b"".join(self._outgoing)
            self._outgoing.clear()
        socket = self._socket
        if not data or not is_alive(socket) or socket.state() != _CONNECTED:
            return
        self._write(data)
        self._push_logging_failure()

    def _push_logging_failure(self) -> None:
        """``_push`` where nobody could be told of a failure (slots, queued calls)."""
        try:
            self._push()
        except SendFailed as exc:
            self.metrics.record_error()
            log.warning("%s", exc)

    def announce(self, handler_names: list[str]) -> None:
        """Send a ``ready`` listing ``handler_names`` (the handler list changed)."""
        if threading.get_ident() != self._waiter.owner:
            self._invoker.call_soon(lambda: self.announce(handler_names))
            return
        if self._closed or not is_alive(self._socket):
            return
        self._session.announce(handler_names)
        self._write(self._session.take_output())
        self._push()

    # -- receiving -------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        msg = self.try_receive()
        if msg is not None:
            return msg
        inbox = self._inbox
        self._waiter.wait(lambda: bool(inbox) or self._closed, timeout, self._poll_for())
        msg = self.try_receive()  # raises Disconnected once closed and empty
        if msg is not None:
            return msg
        raise ChannelTimeout(f"channel {self._name!r}: no message within {timeout}s")

    def try_receive(self) -> Optional[IpcMessage]:
        """The next message if one is waiting, else ``None``; ``Disconnected`` once closed."""
        inbox = self._inbox
        with self._waiter.cond:
            if not inbox:
                if self._closed:
                    raise Disconnected(f"channel {self._name!r} is closed")
                return None
            msg = inbox.popleft()
            resume = self._paused and len(inbox) <= self._capacity // 2
            if resume:
                self._paused = False
        if resume:
            self._invoker.call_soon(self._on_ready_read)
        return msg

    def _queue_length(self) -> int:
        return len(self._inbox)

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event``; on the Qt thread the loop keeps delivering meanwhile."""
        if threading.get_ident() != self._waiter.owner:
            return event.wait(timeout)
        # The event may be set by another thread, so the wait also polls.
        poll = self._poll_for() or _nothing
        return self._waiter.wait(event.is_set, timeout, poll)

    def _poll_for(self) -> Optional[Callable[[], None]]:
        # Inside our own readyRead slot Qt will not signal this socket again:
        # a nested wait has to read by itself.
        return self._read_available if self._reading else None

    def _message_handlers_changed(self) -> None:
        # Messages that arrived before the first handler go to it, on the Qt thread.
        if self._message_handlers and self._inbox:
            self._invoker.call_soon(self._drain_inbox_to_handlers)

    def _drain_inbox_to_handlers(self) -> None:
        if self._message_handlers and self._inbox:
            self._deliver([])

    def _take_inbox(self) -> list[IpcMessage]:
        with self._waiter.cond:
            messages = list(self._inbox)
            self._inbox.clear()
            resume, self._paused = self._paused, False
        if resume:
            self._invoker.call_soon(self._on_ready_read)
        return messages

    # -- the Qt side: signals --------------------------------------------------

    def _on_ready_read(self) -> None:
        delivery = _delivery
        if not delivery.depth:
            delivery.generation += 1
        delivery.depth += 1
        self._reading += 1
        try:
            self._read_available(signalled=True)
        finally:
            self._reading -= 1
            delivery.depth -= 1
        for failure in _push_holding():  # one write per connection for what handlers sent
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
        was_established = session.established
        messages = session.feed(data)
        out = session.take_output()
        if out:
            self._write(out)
        if session.must_close:
            self._log_refusal()
            self._close_socket()
            self._mark_closed()
        elif session.established and not was_established:
            self._session_opened(messages)
        if messages:
            self._deliver(messages)

    def _session_opened(self, messages: list[IpcMessage]) -> None:
        if not self._session.server:
            # The ready that opened the session answers connect(); its data is in
            # peer_info. Later readys (handler list changes) are delivered.
            for index, msg in enumerate(messages):
                if msg.type is _READY:
                    del messages[index]
                    break
        if self._on_established is not None:
            self._on_established(self)  # before delivery: on_connection may add handlers
        self._waiter.wake()  # connect() waits for this

    def _deliver(self, messages: list[IpcMessage]) -> None:
        if not self._message_handlers:
            inbox = self._inbox
            with self._waiter.cond:
                inbox.extend(messages)
                self.metrics.observe_queue_length(len(inbox))
                if len(inbox) >= self._capacity:
                    self._paused = True  # resumed once receive() has taken half
            self._waiter.wake()
            return
        pending = self._pending
        if len(messages) == 1 and not pending and not self._inbox:
            self._dispatch(messages[0])  # the common case, without the queue
        else:
            if self._inbox:  # what came before the first handler goes first
                pending.extend(self._take_inbox())
            pending.extend(messages)
            # A handler may wait (nested loop) and read more, which lands in ``pending``
            # behind the rest of this batch: order is kept.
            while pending:
                self._dispatch(pending.popleft())
        if self._waiter.waiting:
            self._waiter.wake()

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

    def close(self) -> None:
        """Close the connection; wakes blocked ``receive`` with ``Disconnected``. Idempotent."""
        self.shutdown()

    def _on_shutdown(self) -> None:
        if not self._closed:
            self._closed_locally = True
        if threading.get_ident() == self._waiter.owner:
            self._teardown()
            return
        with self._waiter.cond:
            self._closed = True  # waiters on other threads see it at once
            self._waiter.cond.notify_all()
        self._invoker.call_soon(self._teardown)

    def _teardown(self) -> None:
        self._flush_outgoing()
        self._close_socket()
        self._mark_closed()

    def _close_socket(self) -> None:
        """Hang up gracefully: Qt writes what is buffered, then closes (bounded by a timer)."""
        socket = self._socket
        if not is_alive(socket) or socket.state() == _UNCONNECTED:
            return
        self._push_logging_failure()
        socket.flush()  # writes what it can now, without blocking
        if socket.bytesToWrite() == 0:
            socket.abort()
            return
        socket.disconnectFromServer()

        def abort_if_stuck() -> None:
            if is_alive(socket) and socket.state() != _UNCONNECTED:
                socket.abort()

        QtCore.QTimer.singleShot(_CLOSE_GRACE_MS, abort_if_stuck)

    def _mark_closed(self) -> None:
        """Qt thread: the connection is over; wake waiters, tell the server, shut down."""
        with self._waiter.cond:
            self._closed = True
        self._waiter.wake()
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed(self)
        self._state.shutdown()  # idempotent: callbacks (a Peer failing requests) run once


def _nothing() -> None:
    pass


def _never() -> bool:
    return False


def _ms(seconds: float) -> int:
    """``seconds`` as a Qt timer interval (a C int of milliseconds)."""
    return min(max(0, int(seconds * 1000)), 2**31 - 1)


def _ms_left(deadline: float) -> int:
    return _ms(deadline - time.monotonic())


def _sleep_in_loop(seconds: float) -> None:
    """Wait ``seconds`` while the Qt loop keeps running (connect's back-off)."""
    _LocalLoop().run(_never, seconds, None)


def _process_events_briefly() -> None:
    """Run pending events and wait a moment for more (while no nested loop can run)."""
    QtCore.QCoreApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 1)
    time.sleep(_POLL_MS / 1000)


class QtLocalSocketServer(IpcServer):
    """A ``QLocalServer`` serving many clients at once from the Qt event loop.

    It listens on ``resolve_address(name)`` with a user-only socket, after
    taking over a stale socket file (``claim_address``); a live server under the
    same name makes the constructor raise ``AddressInUse``. ``token`` (if given)
    is required in every client's ``hello``; ``handler_names`` are the names announced
    in ``ready``; a client that has not opened its session within
    ``handshake_timeout`` seconds is dropped. Same signature as
    ``LocalSocketChannelServer``. Each connection is a :class:`QtLocalSocketChannel`.

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
        _require_app()
        self._capacity = capacity
        self._name = name
        self._handshake_timeout = handshake_timeout
        self._token = token
        self._max_frame = max_frame
        self._peer_name = peer_name
        self._handler_names = sorted(handler_names or [])
        self._connections: list[QtLocalSocketChannel] = []
        self._handshaking: set[QtLocalSocketChannel] = set()
        self._unaccepted: deque[QtLocalSocketChannel] = deque()
        self._connection_handlers: list[ConnectionHandler] = []
        self._counter = itertools.count(1)
        self._waiter = _Waiter(threading.get_ident())
        self._invoker = _Invoker()
        self._closed = False
        self.metrics = IpcChannelMetrics(lambda: len(self._unaccepted))
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
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return self._address

    @property
    def connections(self) -> list[IpcChannel]:
        return list(self._connections)

    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        unaccepted = self._unaccepted
        self._waiter.wait(lambda: bool(unaccepted) or self._closed, timeout)
        with self._waiter.cond:
            if unaccepted:
                return unaccepted.popleft()
        if self._closed:
            raise ShuttingDown(f"server {self._name!r} is closed")
        raise ChannelTimeout(f"server {self._name!r}: no connection within {timeout}s")

    def on_connection(self, handler: ConnectionHandler) -> None:
        self._connection_handlers.append(handler)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """On the Qt thread: hold emits and write them at the block's end (``IpcServer.batch``)."""
        if not on_qt_main_thread():
            return contextlib.nullcontext()
        return _holding_sends()

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client (encoded once)."""
        frame = encode_event(event, data, self._max_frame)
        for conn in tuple(self._connections):
            try:
                conn.send_frame(frame)
            except IpcChannelError as exc:  # closed meanwhile: it leaves the list soon
                log.debug("server %r: event %r not sent to %r: %s", self._name, event, conn, exc)
                continue
            self.metrics.record_sent(len(frame))

    def set_handler_names(self, names: list[str]) -> None:
        self._handler_names = sorted(names)
        for conn in tuple(self._connections):
            conn.announce(self._handler_names)

    def _announced_handler_names(self) -> list[str]:
        return self._handler_names

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
                list_handler_names=self._announced_handler_names,
                capacity=self._capacity,
                on_established=self._on_established,
                on_closed=self._on_connection_closed,
            )
            self._handshaking.add(conn)
            if self._handshake_timeout is not None:
                QtCore.QTimer.singleShot(
                    _ms(self._handshake_timeout), lambda c=conn: self._drop_if_silent(c)
                )
            if socket.bytesAvailable():
                conn._on_ready_read()

    def _drop_if_silent(self, conn: QtLocalSocketChannel) -> None:
        if conn in self._handshaking and not conn.established:
            log.warning("server %r: %r opened no session in time; dropped", self._name, conn)
            self.metrics.record_error()
            conn.close()

    def _on_established(self, conn: QtLocalSocketChannel) -> None:
        self._handshaking.discard(conn)
        self._connections.append(conn)
        with self._waiter.cond:
            self._unaccepted.append(conn)
        for handler in tuple(self._connection_handlers):
            try:
                handler(conn)
            except Exception:
                self.metrics.record_error()
                log.exception("server %r: connection handler %r raised", self._name, handler)
        self._waiter.wake()

    def _on_connection_closed(self, conn: QtLocalSocketChannel) -> None:
        if conn in self._handshaking:
            self._handshaking.discard(conn)
            if conn._session.must_close:
                self.metrics.record_error()  # refused: wrong token, bad protocol, ...
        if conn in self._connections:
            self._connections.remove(conn)
        with self._waiter.cond:
            if conn in self._unaccepted:
                self._unaccepted.remove(conn)

    def close(self) -> None:
        """Stop listening, close every connection, remove the socket file. Idempotent."""
        if threading.get_ident() != self._waiter.owner:
            with self._waiter.cond:
                self._closed = True
                self._waiter.cond.notify_all()
            self._invoker.call_soon(self.close)
            return
        if self._closed and not is_alive(self._server):
            return
        self._closed = True
        for conn in (*self._connections, *self._handshaking):
            conn.close()
        self._connections.clear()
        self._handshaking.clear()
        server = self._server
        if is_alive(server):
            server.close()  # also removes the socket file
            server.deleteLater()
        self._waiter.wake()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._connections)} connection(s)"
        return f"<QtLocalSocketServer {self._name!r} at {self._address!r}, {state}>"
