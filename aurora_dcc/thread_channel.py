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
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional, Union

from .channel import IpcChannel
from .errors import ChannelTimeout, SendFailed, ShuttingDown
from .message import IpcMessage
from .metrics import IpcChannelMetrics
from .shutdown import ShutdownState

__all__ = ["ThreadChannel"]

_perf = time.perf_counter

LATENCY_SAMPLE = 256
"""Latency is measured on about one message in this many (the first, then the
first sent after every ``LATENCY_SAMPLE`` receives)."""

_NEVER = float("inf")


class _Default:
    """Marker for "use the channel's default send timeout"."""


_DEFAULT = _Default()


class _BoundedQueue:
    """A deque guarded by one lock with three conditions; ``close()`` wakes all.

    ``on_nonempty`` is called (outside the lock) by the put that takes the queue
    from empty to non-empty: the hook ``DccIpcChannel`` wakes on.

    Metrics cost one counter per message and almost nothing else on the fast
    paths (in CPython a counter costs ~5% of a put and take, a test ~2%):

    - Messages are numbered 1, 2, 3, ... as they are put; ``takes`` counts those
      taken, so the next taken is number ``takes + 1`` and ever put is
      ``takes + len(queue)``.
    - ``put`` compares the queue's length with ``_slow_at``, where it had to
      compare it with the capacity anyway: ``_slow_at`` is the peak length so
      far (never above the capacity), or 0 when the queue is closed or a latency
      sample is due. Past it, a put records a new peak, or takes the slow path:
      it refuses, waits for room, or stamps the sampled message's send time.
    - A take compares ``takes`` with ``_take_check`` instead of testing whether
      senders wait for room: ``_take_check`` is 0 while they do, otherwise the
      number of the next stamped message or the take that arms the next sample.
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
        self._slow_at = 0  # see the class docstring
        self._take_check: float = _NEVER
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
        # Threads waiting for a message / for room / for the queue to empty:
        # counted (under the lock) so that put and take skip notify() when
        # nobody waits (it costs about as much as the put or take itself).
        self._item_waiters = 0
        self._room_waiters = 0
        self._empty_waiters = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def puts(self) -> int:
        """Messages ever put."""
        with self._lock:
            return self.takes + len(self._items)

    def put(self, msg: IpcMessage, timeout: Optional[float]) -> None:
        items = self._items
        with self._lock:
            length = len(items) + 1  # with this message
            if length > self._slow_at:
                if self._slow_at and length <= self.capacity:
                    self.peak = self._slow_at = length  # a new peak, and nothing else
                else:
                    length = self._before_rare_put(timeout)
            items.append(msg)
            if self._item_waiters:
                self._not_empty.notify()
        if length == 1 and self.on_nonempty is not None:
            self.on_nonempty()

    def _before_rare_put(self, timeout: Optional[float]) -> int:
        """The put's slow path, before its append: closed, full or a sample due.

        Returns the queue's length with the message to be put.
        """
        if self.closed:
            raise ShuttingDown("channel is shutting down: message not sent")
        if len(self._items) >= self.capacity:
            self._wait_for_room(timeout)
        length = len(self._items) + 1
        if length > self.peak:
            self.peak = length
        if self._sample_due:
            self._sample_due = False
            self._stamps.append((self.takes + length, _perf()))
            self._update_take_check()
        self._slow_at = self.peak
        return length

    def _wait_for_room(self, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._items) >= self.capacity and not self.closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise SendFailed(
                    f"queue full ({self.capacity} messages) for {timeout}s: message not sent"
                )
            self._room_waiters += 1
            self._take_check = 0
            try:
                self._not_full.wait(remaining)
            finally:
                self._room_waiters -= 1
                self._update_take_check()
        if self.closed:
            raise ShuttingDown("channel shut down while waiting for room: message not sent")

    def _update_take_check(self) -> None:
        if self._room_waiters:
            self._take_check = 0
        else:
            stamped = self._stamps[0][0] if self._stamps else _NEVER
            self._take_check = min(stamped, self._arm_at)

    def _after_rare_take(self, count: int) -> None:
        """A take's slow path, after ``count`` messages were taken."""
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
        self._update_take_check()

    def _pop(self) -> IpcMessage:
        self.takes = taken = self.takes + 1
        msg = self._items.popleft()
        if taken >= self._take_check:
            self._after_rare_take(1)
        if not self._items and self._empty_waiters:
            self._empty.notify_all()
        return msg

    def get(self, timeout: Optional[float]) -> IpcMessage:
        with self._lock:
            if not self._items:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._items:
                    if self.closed:
                        raise ShuttingDown("channel is shut down and empty")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ChannelTimeout(f"no message within {timeout}s")
                    self._item_waiters += 1
                    try:
                        self._not_empty.wait(remaining)
                    finally:
                        self._item_waiters -= 1
            return self._pop()

    def get_nowait(self) -> Optional[IpcMessage]:
        with self._lock:
            return self._pop() if self._items else None

    def get_many(self, limit: int) -> list[IpcMessage]:
        """Up to ``limit`` messages, oldest first, for one lock hold and one notify."""
        with self._lock:
            items = self._items
            count = min(limit, len(items))
            if not count:
                return []
            self.takes += count
            popleft = items.popleft
            batch = [popleft() for _ in range(count)]
            if self.takes >= self._take_check:
                self._after_rare_take(count)
            if not items and self._empty_waiters:
                self._empty.notify_all()
            return batch

    def wait_empty(self, timeout: Optional[float]) -> bool:
        with self._lock:
            self._empty_waiters += 1
            try:
                return self._empty.wait_for(lambda: not self._items, timeout)
            finally:
                self._empty_waiters -= 1

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
        """Call ``callback`` whenever this end's queue goes from empty to non-empty.

        It runs on the sending thread, outside the queue's lock, and must be quick.
        """
        self._inbox.on_nonempty = callback

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

    def _queue_length(self) -> int:
        return len(self._inbox)

    def _derive_counts(self, metrics: IpcChannelMetrics) -> None:
        # Only this end puts into its outbox (the other end's inbox, or its own
        # in a loopback), and only this end takes from its inbox.
        metrics.messages_sent = self._outbox.puts
        metrics.messages_received = self._inbox.takes
        metrics.peak_queue_length = self._inbox.peak

    def wait_for_drain(self, timeout: Optional[float] = None) -> None:
        """Wait until in-flight operations end and the receiver has taken all we sent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._state.wait_for_drain(timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._outbox.wait_empty(remaining):
            raise ChannelTimeout(f"{len(self._outbox)} message(s) still queued after {timeout}s")

    def _handlers_changed(self) -> None:
        # Handlers need something to call them: a daemon thread, started once.
        if self._dispatcher is None and self._handlers:
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
