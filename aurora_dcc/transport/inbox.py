"""``Inbox``: the messages a stream channel read but nobody received yet.

Bounded, with back-pressure: a reader that finds it full stops reading, so the
sender is held back by the OS socket buffers instead of our memory growing.
Shared by the pure-Python and the Qt channels (through
:class:`~aurora_dcc.transport.stream.StreamChannel`).

Usage::

    inbox = Inbox(capacity=100, metrics=IpcChannelMetrics())
    with inbox.lock:
        inbox.put_all([IpcMessage.event_message("tick")])
        inbox.pop().event            # 'tick'
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Optional

from ..channel.metrics import IpcChannelMetrics
from ..protocol.message import IpcMessage

__all__ = ["Inbox"]

_ROOM_CHECK = 0.05
"""A thread waiting for room in a full inbox looks this often whether it should stop."""


class Inbox:
    """Messages read but not yet received, at most about ``capacity`` of them.

    Guarded by ``lock`` (``cond``'s lock: sections that do not wait take the
    bare lock, which is cheaper). ``waiting`` counts the threads blocked on
    ``cond``, so a change wakes them only when somebody waits.

    Back-pressure: a reader that finds the inbox full stops reading, so the
    sender is held back by the OS buffers instead of our memory growing. A
    reader thread blocks in :meth:`wait_for_room`; an event-loop transport
    pauses reading, calls :meth:`want_room` and passes ``on_room``, which is
    called once the inbox is down to half (from the taking thread, under the
    lock: it may only schedule the resumption).

    Usage::

        inbox = Inbox(capacity=100, metrics=channel.metrics)
        with inbox.lock:
            inbox.put_all(messages)
            first = inbox.pop()
    """

    def __init__(
        self,
        capacity: int,
        metrics: IpcChannelMetrics,
        on_room: Optional[Callable[[], None]] = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.metrics = metrics
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.messages: deque[IpcMessage] = deque()
        self.waiting = 0
        self.closed = False
        self.reason = "channel closed"
        self._on_room = on_room
        self._room_wanted = False

    def __len__(self) -> int:
        return len(self.messages)

    # The methods below are called with ``lock`` held.

    @property
    def full(self) -> bool:
        return len(self.messages) >= self.capacity

    def want_room(self) -> None:
        """Somebody waits for the inbox to empty (see the class docstring)."""
        self._room_wanted = True

    def wait(self, timeout: Optional[float]) -> None:
        self.waiting += 1
        try:
            self.cond.wait(timeout)
        finally:
            self.waiting -= 1

    def wake(self) -> None:
        if self.waiting:  # notify costs even with nobody waiting
            self.cond.notify_all()

    def put_all(self, messages: list[IpcMessage]) -> None:
        if self.closed or not messages:
            return  # closed here: nobody is going to receive them
        self.messages.extend(messages)
        self.metrics.observe_queue_length(len(self.messages))
        self.wake()

    def pop(self) -> IpcMessage:
        msg = self.messages.popleft()
        if self._room_wanted:
            self._made_room()
        return msg

    def _made_room(self) -> None:
        if self._on_room is None:
            self.wake()  # a reader thread waits in wait_for_room
        elif len(self.messages) <= self.capacity // 2:
            self._room_wanted = False
            self._on_room()

    # The methods below take ``lock`` themselves.

    def take_all(self) -> list[IpcMessage]:
        with self.lock:
            taken = list(self.messages)
            self.messages.clear()
            if self._room_wanted:
                self._made_room()
        return taken

    def wait_for_room(self, stop: Callable[[], bool]) -> bool:
        """A reader thread: wait while the inbox is full; False if ``stop()`` became true."""
        if len(self.messages) < self.capacity:
            return True
        with self.cond:
            self._room_wanted = True
            try:
                while len(self.messages) >= self.capacity and not self.closed:
                    if stop():
                        return False
                    self.wait(_ROOM_CHECK)  # looks at stop() again: a handler registered meanwhile
            finally:
                self._room_wanted = False
        return True

    def close(self, reason: str) -> None:
        """Wake every receiver with ``Disconnected`` once the waiting messages are taken."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.reason = reason
            self.wake()
