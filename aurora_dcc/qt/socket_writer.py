"""Writing frames to a ``QLocalSocket``: straight to its descriptor, held while we deliver.

A send outside our ``readyRead`` slots is written at once. While a slot
delivers, a handler's first frame (its reply, or an event) is written at
once, and so is any frame sent after a pause (``_HOLD_SECONDS`` since the
previous one): a long handler's progress events reach clients as they are
emitted. Frames that follow closely (a burst) are held and written together:
when the burst reaches ``_HOLD_BYTES``, when the next frame comes after
``_HOLD_SECONDS``, when the slot returns (one write per connection per batch),
or when the handler runs an event loop (a dialog, a nested wait). So the last
frames of a burst wait for the handler's next send or its return.
Bytes go straight to the socket's descriptor while Qt has none queued (Qt's own
write path costs event-loop wake-ups per message); what the OS does not take at
once is queued in Qt, which writes it as the peer reads. Sends from other
threads are collected and written by the Qt thread, one write per hand-off.
Closing (``hang_up``) lets Qt write what is still buffered first, for a while.

A server connection's output is bounded (``max_send_buffer``): a broadcast
(``send_broadcast``) that finds more bytes than that waiting for the peer (in
Qt's write buffer, or sent from other threads and not yet written) drops the
client instead (logged; the socket is aborted, which frees Qt's buffer; no
``bye``: the stream may stop in the middle of a frame), and what is sent to it
meanwhile is discarded. A direct send is not checked: it is the application's
own reply or stream to that client, and the Qt thread cannot wait for the peer.
The check reads a counter, and Qt's only while Qt holds bytes.

Usage (the Qt channel's side of it)::

    writer = QtSocketWriter(socket, "auroraview_4711", metrics, Invoker())
    writer.send(frame, 1)              # any thread; never blocks the Qt loop
    with holding_sends():              # what this thread sends is written at the end
        writer.send(frame, 1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

from qtpy import QtNetwork

from ..channel.metrics import IpcChannelMetrics
from ..errors import SendFailed
from .compat import QtCore, is_alive
from .event_loop import Invoker

__all__ = [
    "DeliveryState",
    "QtSocketWriter",
    "delivery",
    "direct_writes_possible",
    "holding_sends",
    "push_holding",
]

log = logging.getLogger(__name__)

_CONNECTED = QtNetwork.QLocalSocket.LocalSocketState.ConnectedState
_UNCONNECTED = QtNetwork.QLocalSocket.LocalSocketState.UnconnectedState
_CLOSE_GRACE_MS = 2000
"""How long a closing socket may take to write what is still buffered before it is aborted."""
_HOLD_BYTES = 32 * 1024
"""Held sends are written once they reach this many bytes (more falls out of the CPU caches)."""
_HOLD_SECONDS = 0.002
"""...or once the oldest held byte is this old when the next send comes."""


def direct_writes_possible() -> bool:
    """True if bytes may be written on a ``QLocalSocket``'s descriptor with ``os.write``.

    Not on Windows (there the descriptor is a pipe handle), and only while
    SIGPIPE is ignored (as Python and Qt set it up), so a write to a peer that
    has just gone fails with EPIPE instead of killing the host application.
    """
    return os.name != "nt" and signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


def _writable_descriptor(socket: Any) -> int:
    """The descriptor to write on directly, or -1 (see ``direct_writes_possible``).

    Only a non-blocking one (as Qt sets them up): a write must never block the Qt thread.
    """
    if not direct_writes_possible():
        return -1
    fd = int(socket.socketDescriptor())
    try:
        return fd if fd >= 0 and not os.get_blocking(fd) else -1
    except OSError:
        return -1


class DeliveryState(threading.local):
    """Per thread: how many of our ``readyRead`` slots are running, and who holds bytes.

    While one runs, a connection writes the first frame a handler sends at
    once (a reply: no wait for the slot to return), and any frame after a
    pause, and holds what follows closely, writing it when the slot returns:
    a burst, or a broadcast to many clients, costs one write per connection
    per batch instead of one per message.
    ``depth`` counts the slot runs in progress (a slot's handler may run a nested
    loop); ``generation`` counts the outermost ones (which frame is a first);
    ``batches`` counts ``holding_sends()`` blocks, in which every frame is held;
    ``holding`` lists the writers with held bytes (``push_holding`` writes them).

    Usage (a ``readyRead`` slot)::

        if not delivery.depth:
            delivery.generation += 1
        delivery.depth += 1
        try:
            read_and_dispatch()
        finally:
            delivery.depth -= 1
        push_holding()
    """

    def __init__(self) -> None:
        self.depth = 0
        self.generation = 0
        self.batches = 0
        self.holding: list[QtSocketWriter] = []


delivery = DeliveryState()
"""This thread's :class:`DeliveryState`."""


@contextlib.contextmanager
def holding_sends() -> Iterator[None]:
    """Hold what this thread's connections send, as our ``readyRead`` slot does, and
    write it when the outermost block ends (``batch()``); raises the first failure."""
    state = delivery
    state.depth += 1
    state.batches += 1
    try:
        yield
    finally:
        state.batches -= 1
        state.depth -= 1
        if not state.depth:
            failures = push_holding()
            for extra in failures[1:]:
                log.warning("%s", extra)
            if failures:
                raise failures[0]


def push_holding() -> list[SendFailed]:
    """Write what this thread's writers hold, every one even after a failure;
    returns the failures (each counted in its connection's metrics)."""
    failures: list[SendFailed] = []
    holding = delivery.holding
    while holding:
        writer = holding.pop()
        try:
            writer.push()
        except SendFailed as exc:
            writer.metrics.record_error()
            failures.append(exc)
    return failures


class QtSocketWriter:
    """The output side of one ``QLocalSocket`` (see the module docstring).

    Made and used on the socket's thread (``owner``), except ``send``, which any
    thread may call. It counts what it sends in ``metrics``. ``max_send_buffer``:
    bytes the peer may fall behind by before it is dropped (``None``: no bound).

    Usage::

        writer = QtSocketWriter(socket, "auroraview_4711", channel.metrics, Invoker())
        writer.send(frame, 1)
    """

    def __init__(
        self,
        socket: Any,
        name: str,
        metrics: IpcChannelMetrics,
        invoker: Invoker,
        max_send_buffer: Optional[int] = None,
    ) -> None:
        self.metrics = metrics
        self.owner = threading.get_ident()
        self._socket = socket
        self._name = name
        self._invoker = invoker
        self._queued: list[bytes] = []  # frames sent from other threads
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        # No bound: a client's own writes (its server reads them or hangs up).
        self._max_send_buffer = max_send_buffer if max_send_buffer is not None else -1
        self._dropped = False  # fell behind: what is sent to it now is discarded
        self._queued_broadcast = False  # other threads queued a broadcast (see write_queued)
        # Bytes not yet written (see hold); the timer writes them if an event loop
        # runs before our slot returns (a handler's modal dialog, a nested wait).
        # A bytearray, not a list of frames: each frame is freed as soon as it is copied,
        # so a burst never frees hundreds of small buffers at once (which can make the C
        # allocator hand memory back to the OS and fault it in again on the next burst).
        self._held = bytearray()
        self._held_since = 0.0
        self._push_timer = QtCore.QTimer()
        self._push_timer.setSingleShot(True)
        self._push_timer.setInterval(0)
        self._push_timer.timeout.connect(self.push_logging_failure)
        self._push_timer_armed = False
        self._first_sent = -1  # the delivery generation whose first frame was written at once
        self._last_sent = 0.0  # when a slot of ours last sent on this socket (pause or burst?)
        self._fd = _writable_descriptor(socket)
        self._qt_queued = False  # bytes were handed to Qt's write buffer (maybe still there)

    def send(self, frame: bytes, count: int) -> None:
        """Write ``frame`` (``count`` whole frames) now, or hold it (see the module
        docstring); any thread. Counts them as sent."""
        metrics = self.metrics
        if threading.get_ident() == self.owner:
            held = self._held
            state = delivery
            if not state.depth:
                if held:  # keep the order behind anything still held
                    self.hold(frame)
                    self.push()
                else:
                    self._write_now(frame)
            elif held:
                # Inside a readyRead slot of ours (a handler is sending, maybe to several
                # connections): the slot writes when it returns; a long burst as it goes.
                held += frame
                now = time.monotonic()
                self._last_sent = now
                if len(held) >= _HOLD_BYTES or now - self._held_since >= _HOLD_SECONDS:
                    self.push()
            elif state.batches:
                self.hold(frame)
            else:
                # A slot's first frame (a reply), or the first after a pause (a handler's
                # progress event) is written at once; frames close behind it are a burst.
                now = time.monotonic()
                if self._first_sent != state.generation or now - self._last_sent >= _HOLD_SECONDS:
                    self._first_sent = state.generation  # see DeliveryState
                    self._write_now(frame)
                else:
                    self.hold(frame)
                self._last_sent = now
            metrics.messages_sent += count
            metrics.bytes_sent += len(frame)
            return
        with self._queued_lock:
            queued = self._queued
            queued.append(frame)
            self._queued_bytes += len(frame)
            metrics.messages_sent += count
            metrics.bytes_sent += len(frame)
            first = len(queued) == 1
        if first:  # one hand-off for everything sent until the Qt thread writes it
            self._invoker.call_soon(self.write_queued)

    def hold(self, data: bytes) -> None:
        """Owner thread: hold ``data`` for the next ``push`` (which keeps all writes in order)."""
        if not data:
            return
        held = self._held
        if not held:
            self._held_since = time.monotonic()
            state = delivery
            if state.depth:
                state.holding.append(self)
                if not self._push_timer_armed:
                    self._push_timer_armed = True
                    self._push_timer.start()
        held += data

    def push(self) -> None:
        """Owner thread: write what is held, without blocking; raises ``SendFailed``."""
        held = self._held
        if not held:
            return
        data = bytes(held)
        held.clear()
        try:
            self._write_now(data)
        finally:
            if self._push_timer_armed:  # after the write: not on the reply's way out
                self._push_timer_armed = False
                self._push_timer.stop()

    def push_logging_failure(self) -> None:
        """``push`` where nobody could be told of a failure (slots, queued calls)."""
        try:
            self.push()
        except SendFailed as exc:
            self.metrics.record_error()
            log.warning("%s", exc)

    def write_queued(self) -> None:
        """Owner thread: write what other threads sent (also when a close is pending)."""
        with self._queued_lock:
            data = b"".join(self._queued)
            self._queued.clear()
            self._queued_bytes = 0
            broadcast, self._queued_broadcast = self._queued_broadcast, False
        socket = self._socket
        if not data or not is_alive(socket) or socket.state() != _CONNECTED:
            return
        if broadcast and self._qt_queued and socket.bytesToWrite() > self._max_send_buffer >= 0:
            self._dropped = True  # as send_broadcast would have on this thread
            self._drop(socket.bytesToWrite())
            return
        self.hold(data)
        self.push_logging_failure()

    def hang_up(self) -> None:
        """Owner thread: close gracefully: Qt writes what is buffered, then closes
        (aborted if the peer does not read it within a grace period)."""
        socket = self._socket
        if not is_alive(socket) or socket.state() == _UNCONNECTED:
            return
        self.push_logging_failure()
        socket.flush()  # writes what it can now, without blocking
        if socket.bytesToWrite() == 0:
            socket.abort()
            return
        socket.disconnectFromServer()

        def abort_if_stuck() -> None:
            if is_alive(socket) and socket.state() != _UNCONNECTED:
                socket.abort()

        QtCore.QTimer.singleShot(_CLOSE_GRACE_MS, abort_if_stuck)

    def stop_direct_writes(self) -> None:
        """The socket is closing: from now on only Qt writes (its descriptor may go)."""
        self._fd = -1

    def _write_now(self, data: bytes) -> None:
        """Straight to the descriptor when Qt has nothing queued: a write through
        ``QLocalSocket`` arms and disarms Qt's write notifier, which costs event
        dispatcher wake-ups and a loop iteration per reply. What the OS does not
        take at once is queued in Qt, which writes it when the socket is writable
        (and reports any error)."""
        socket = self._socket
        if not is_alive(socket):
            return
        fd = self._fd
        if self._qt_queued and not socket.bytesToWrite():
            self._qt_queued = False
        # Qt closes the descriptor only when it closes the socket, and then tells
        # the channel at once (on this thread), which stops direct writes first.
        if fd >= 0 and not self._qt_queued:
            try:
                written = os.write(fd, data)
            except OSError:  # full (EAGAIN), or gone: Qt's write reports the error
                written = 0
            if written == len(data):
                return
            data = data[written:]
        if self._dropped:
            return  # the abort is on its way; nothing more may pile up meanwhile
        if socket.write(data) < 0:
            raise SendFailed(f"channel {self._name!r}: write failed: {socket.errorString()}")
        self._qt_queued = True
        socket.flush()

    def send_broadcast(self, frame: bytes) -> None:
        """``send`` for a server's broadcast (any thread): drops, instead, a peer
        more than ``max_send_buffer`` bytes behind (see the module docstring).
        Not raised: a broadcast goes on to the other clients."""
        if self._dropped:
            return
        bound = self._max_send_buffer
        if bound >= 0:
            if threading.get_ident() != self.owner:
                # Qt's buffer is checked when the Qt thread writes this (write_queued).
                waiting = self._queued_bytes  # read without the lock: a hint is enough
                self._queued_broadcast = True
            elif self._qt_queued and is_alive(self._socket):
                waiting = self._socket.bytesToWrite()
            else:
                waiting = 0
            if waiting > bound:
                self._dropped = True
                self._invoker.call_soon(lambda: self._drop(waiting))
                return
        self.send(frame, 1)

    def _drop(self, waiting: int) -> None:
        """Owner thread (a queued call, so no slot of this socket runs): the peer fell
        ``waiting`` bytes behind: abort the connection, freeing what waits for it."""
        self._fd = -1
        self._held.clear()
        with self._queued_lock:
            self._queued.clear()
            self._queued_bytes = 0
        log.warning(
            "channel %r: dropped: the client fell behind by %d bytes (bound %d)",
            self._name,
            waiting,
            self._max_send_buffer,
        )
        if is_alive(self._socket):
            self._socket.abort()  # frees Qt's write buffer; the channel learns it is gone
