"""``ThreadChannel``: an in-process channel over a bounded queue.

A single ``ThreadChannel`` is a loopback queue: any thread sends, any thread
receives. ``ThreadChannel.pair()`` gives two connected ends, each receiving
what the other sends, sharing one :class:`ShutdownState`.

Usage::

    a, b = ThreadChannel.pair("jobs", capacity=1000)
    a.send(IpcMessage.request("scene.info"))
    b.receive(timeout=1.0).method      # 'scene.info'

A full queue makes ``send`` wait up to its timeout, then raise ``SendFailed``:
nothing is ever dropped silently. ``shutdown()`` wakes blocked senders and
receivers with ``ShuttingDown``; messages already queued can still be received.
A send or receive that does not have to wait takes no lock (see
``_BoundedQueue``): across two threads that is much faster than a locked
queue such as ``queue.Queue`` (docs/performance.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional, Union

from ..errors import ChannelTimeout, SendFailed, ShuttingDown
from ..protocol.message import IpcMessage
from .base import IpcChannel
from .metrics import IpcChannelMetrics
from .shutdown import ShutdownState

__all__ = ["ThreadChannel"]

_perf = time.perf_counter

LATENCY_SAMPLE = 256
"""Latency is measured on about one message in this many (the first, then the
first sent after every ``LATENCY_SAMPLE`` receives)."""


class _Default:
    """Marker for "use the channel's default send timeout"."""


_DEFAULT = _Default()


class _BoundedQueue:
    """A bounded FIFO whose puts and takes take no lock.

    ``deque.append`` and ``deque.popleft`` are atomic in CPython, so the fast
    paths need no lock. Under the GIL a lock on them costs far more than the
    lock itself: a thread switched out while holding it makes the other block
    and hand the GIL back (docs/performance.md has the measurement). ``_lock``
    and its conditions serve the rare paths only: waiting for a message, for
    room or for the queue to empty, a closed queue, a latency sample. A waiter
    registers under the lock before it looks at the queue, and the fast paths
    look for waiters after they change it, so no wake-up is lost.

    Capacity: a put that finds the queue full waits for room; senders racing
    for the last places may each put one more. ``on_nonempty`` (the receiver's
    wake-up) is called by the first put after ``wake_on_next_put()``.

    Metrics cost one counter per message and almost nothing else on the fast
    paths (a counter is a sizeable part of a put and take; a comparison is
    far cheaper):

    - Messages are numbered 1, 2, 3, ... as they are put; ``takes`` counts those
      taken, so the next taken is number ``takes + 1`` and ever put is
      ``takes + len(queue)``. (Two threads taking from one queue at the same
      moment can, rarely, lose a count on CPython 3.9/3.10.)
    - A put compares the queue's length with ``_slow_at`` where it had to
      compare it with the capacity anyway: ``_slow_at`` is the peak length so
      far (never above the capacity), or 0 when the queue is closed or a
      latency sample is due. Past it, a put records a new peak, or takes the
      slow path: it refuses, waits for room, or stamps the message's send time.
    - A take compares ``takes`` with ``_take_check`` instead of testing for
      waiting threads: ``_take_check`` is 0 while threads wait for room or for
      the queue to empty, otherwise the number of the next stamped message or
      the take that arms the next sample.
    """

    def __init__(self, capacity: int, metrics: IpcChannelMetrics) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.metrics = metrics  # the receiving end's: latency is recorded there
        self.takes = 0  # messages ever taken
        self.peak = 0  # longest the queue has been
        self.on_nonempty: Optional[Callable[[], None]] = None
        self.closed = False
        self._items: deque[IpcMessage] = deque()
        self._wake_wanted = False  # see wake_on_next_put()
        self._slow_at = 0  # see the class docstring
        self._take_check = 0
        self._sample_due = True  # the first message is sampled
        self._arm_at = LATENCY_SAMPLE  # the take after which the next one is
        # (message number, send time) of the sampled messages still queued:
        # kept beside the queue so that the others carry nothing extra.
        self._stamps: deque[tuple[int, float]] = deque()
        lock = threading.Lock()
        self._lock = lock
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._empty = threading.Condition(lock)
        # Threads waiting for a message / for room / for the queue to empty.
        self._item_waiters = 0
        self._room_waiters = 0
        self._empty_waiters = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def puts(self) -> int:
        """Messages ever put."""
        return self.takes + len(self._items)

    # -- putting ---------------------------------------------------------------

    def put(self, msg: IpcMessage, timeout: Optional[float]) -> None:
        items = self._items
        length = len(items)  # before this message
        if length >= self._slow_at:
            if self._slow_at and length < self.capacity:
                self.peak = self._slow_at = length + 1  # a new peak, and nothing else
                if self.closed or self._sample_due:  # set meanwhile: keep the slow path on
                    self._slow_at = 0
            else:
                self._put_slowly(msg, timeout)
                return
        items.append(msg)
        if self._item_waiters:
            self._notify_receiver()
        if self._wake_wanted:
            self._wake_receiver()

    def _put_slowly(self, msg: IpcMessage, timeout: Optional[float]) -> None:
        """Closed, full, or a sample due: under the lock."""
        with self._lock:
            if self.closed:
                raise ShuttingDown("channel is shutting down: message not sent")
            items = self._items
            if len(items) >= self.capacity:
                self._wait_for_room(timeout)
            length = len(items) + 1
            if length > self.peak:
                self.peak = length
            if self._sample_due:
                self._sample_due = False
                self._stamps.append((self.takes + length, _perf()))
                self._update_take_check()
            self._slow_at = self.peak
            items.append(msg)
            if self._item_waiters:
                self._not_empty.notify()
        if self._wake_wanted:
            self._wake_receiver()

    def _wait_for_room(self, timeout: Optional[float]) -> None:
        self._room_waiters += 1
        self._take_check = 0
        try:
            if not self._not_full.wait_for(
                lambda: len(self._items) < self.capacity or self.closed, timeout
            ):
                raise SendFailed(
                    f"queue full ({self.capacity} messages) for {timeout}s: message not sent"
                )
        finally:
            self._room_waiters -= 1
            self._update_take_check()
        if self.closed:
            raise ShuttingDown("channel shut down while waiting for room: message not sent")

    def _notify_receiver(self) -> None:
        with self._lock:
            self._not_empty.notify()

    def _wake_receiver(self) -> None:
        self._wake_wanted = False
        callback = self.on_nonempty
        if callback is not None:
            callback()

    def wake_on_next_put(self) -> bool:
        """Have the next put call ``on_nonempty``; returns False, asking nothing,
        when messages are queued already (the receiver should take them first)."""
        self._wake_wanted = True
        if self._items:  # put before the flag was seen: no wake-up comes for it
            self._wake_wanted = False
            return False
        return True

    # -- taking ----------------------------------------------------------------

    def get_nowait(self) -> Optional[IpcMessage]:
        try:
            msg = self._items.popleft()
        except IndexError:
            return None
        self.takes = taken = self.takes + 1
        if taken >= self._take_check:
            self._after_rare_take(1)
        return msg

    def get(self, timeout: Optional[float]) -> IpcMessage:
        try:
            msg = self._items.popleft()
        except IndexError:
            msg = self._wait_for_message(timeout)
        self.takes = taken = self.takes + 1
        if taken >= self._take_check:
            self._after_rare_take(1)
        return msg

    def _wait_for_message(self, timeout: Optional[float]) -> IpcMessage:
        deadline = None if timeout is None else time.monotonic() + timeout
        items = self._items
        with self._lock:
            self._item_waiters += 1
            try:
                while True:
                    try:
                        return items.popleft()
                    except IndexError:
                        pass
                    if self.closed:
                        raise ShuttingDown("channel is shut down and empty")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ChannelTimeout(f"no message within {timeout}s")
                    self._not_empty.wait(remaining)
            finally:
                self._item_waiters -= 1

    def get_many(self, limit: int) -> list[IpcMessage]:
        """Up to ``limit`` messages, oldest first (maybe none). Never blocks."""
        batch: list[IpcMessage] = []
        items = self._items
        popleft, append = items.popleft, batch.append
        try:
            for _ in range(min(limit, len(items))):
                append(popleft())
        except IndexError:
            pass  # another thread took some meanwhile
        if batch:
            self.takes = taken = self.takes + len(batch)
            if taken >= self._take_check:
                self._after_rare_take(len(batch))
        return batch

    def _after_rare_take(self, count: int) -> None:
        """After ``count`` messages were taken: latency, arming a sample, waiting threads."""
        with self._lock:
            taken, stamps = self.takes, self._stamps
            if stamps and stamps[0][0] <= taken:
                now = _perf()
                while stamps and stamps[0][0] <= taken:
                    self.metrics.record_latency(now - stamps.popleft()[1])
            if taken >= self._arm_at:
                self._arm_at = taken + LATENCY_SAMPLE
                self._sample_due = True
                self._slow_at = 0
            if self._room_waiters:
                self._not_full.notify(count)
            if self._empty_waiters and not self._items:
                self._empty.notify_all()
            self._update_take_check()

    def _update_take_check(self) -> None:
        """Under the lock: see the class docstring."""
        if self._room_waiters or self._empty_waiters:
            self._take_check = 0
        elif self._stamps:
            self._take_check = min(self._stamps[0][0], self._arm_at)
        else:
            self._take_check = self._arm_at

    # -- waiting for the queue to empty, closing ---------------------------------

    def wait_empty(self, timeout: Optional[float]) -> bool:
        with self._lock:
            self._empty_waiters += 1
            self._take_check = 0
            try:
                return self._empty.wait_for(lambda: not self._items, timeout)
            finally:
                self._empty_waiters -= 1
                self._update_take_check()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._slow_at = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()


class ThreadChannel(IpcChannel):
    """In-process channel over a bounded queue (see the module docstring).

    ``send_timeout`` is how long ``send`` waits for room in a full queue by
    default (``None``: until room or shutdown).

    Usage::

        loopback = ThreadChannel("jobs", capacity=100)
        loopback.send(IpcMessage.request("scene.info"))
        loopback.receive(timeout=1.0).method      # 'scene.info'
    """

    def __init__(
        self,
        name: str,
        capacity: int = 10_000,
        *,
        send_timeout: Optional[float] = 10.0,
        shutdown_state: Optional[ShutdownState] = None,
    ) -> None:
        super().__init__(name, shutdown_state)
        self.send_timeout = send_timeout
        self.metrics = IpcChannelMetrics(self._queue_length, derive=self._derive_counts)
        self._inbox = _BoundedQueue(capacity, self.metrics)
        self._outbox = self._inbox  # loopback until pair() connects two ends
        self._dispatcher: Optional[threading.Thread] = None
        self._state.on_shutdown(self._inbox.close)

    @classmethod
    def pair(
        cls, name: str, capacity: int = 10_000, *, send_timeout: Optional[float] = 10.0
    ) -> tuple[ThreadChannel, ThreadChannel]:
        """Two connected ends, ``<name>_a`` and ``<name>_b``, sharing one ShutdownState."""
        state = ShutdownState()
        a = cls(f"{name}_a", capacity, send_timeout=send_timeout, shutdown_state=state)
        b = cls(f"{name}_b", capacity, send_timeout=send_timeout, shutdown_state=state)
        a._outbox, b._outbox = b._inbox, a._inbox
        return a, b

    @property
    def capacity(self) -> int:
        return self._inbox.capacity

    def set_wakeup(self, callback: Optional[Callable[[], None]]) -> None:
        """Have the first send after :meth:`wake_on_next_send` call ``callback``.

        It runs on the sending thread and must be quick.
        """
        self._inbox.on_nonempty = callback

    def wake_on_next_send(self) -> bool:
        """A receiver about to idle: the next send to this end calls the wake-up callback.

        Returns False, and asks for nothing, when messages are queued: take
        them first. Usage, in a receiver woken by the callback::

            while True:
                for msg in end.try_receive_many(256):
                    handle(msg)
                if end.wake_on_next_send():
                    return  # the next send wakes us again
        """
        return self._inbox.wake_on_next_put()

    def send(self, msg: IpcMessage, timeout: Union[float, _Default, None] = _DEFAULT) -> None:
        """Queue ``msg``; waits up to ``timeout`` (default ``send_timeout``) when full."""
        wait = self.send_timeout if isinstance(timeout, _Default) else timeout
        self._outbox.put(msg, wait)

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        return self._inbox.get(timeout)

    def try_receive(self) -> Optional[IpcMessage]:
        return self._inbox.get_nowait()

    def try_receive_many(self, limit: int) -> list[IpcMessage]:
        """Up to ``limit`` waiting messages, oldest first (maybe none). Never blocks."""
        return self._inbox.get_many(limit)

    def queue_length(self) -> int:
        """Messages waiting in this end's inbox."""
        return len(self._inbox)

    _queue_length = queue_length  # the base class's hook (metrics)

    def _derive_counts(self, metrics: IpcChannelMetrics) -> None:
        # Only this end puts into its outbox (the other end's inbox, or its own
        # in a loopback), and only this end takes from its inbox.
        metrics.messages_sent = self._outbox.puts
        metrics.messages_received = self._inbox.takes
        metrics.peak_queue_length = max(self._inbox.peak, len(self._inbox))

    def wait_for_drain(self, timeout: Optional[float] = None) -> None:
        """Wait until in-flight operations end and the receiver has taken all we sent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._state.wait_for_drain(timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._outbox.wait_empty(remaining):
            raise ChannelTimeout(f"{len(self._outbox)} message(s) still queued after {timeout}s")

    def _message_handlers_changed(self) -> None:
        # Handlers need something to call them: a daemon thread, started once.
        if self._dispatcher is None and self._message_handlers:
            self._dispatcher = threading.Thread(
                target=self._dispatch_loop, name=f"aurora-dispatch-{self._name}", daemon=True
            )
            self._dispatcher.start()

    def _dispatch_loop(self) -> None:
        while True:
            try:
                msg = self._inbox.get(None)
            except ShuttingDown:
                return
            self._dispatch(msg)
