"""``ShutdownState``: in-flight operation guards, drain, and shutdown.

One instance may be shared by several channels (``ThreadChannel.pair`` does
this), so shutting one down shuts them all down together.

Usage::

    state = ShutdownState()
    with state.begin_operation():      # raises ShuttingDown once shut down
        handle(message)
    ...
    state.shutdown()                   # refuse new operations, wake waiters
    state.wait_for_drain(timeout=2.0)  # until in-flight operations finish
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Callable, Optional

from ..errors import ChannelTimeout, ShuttingDown

__all__ = ["OperationGuard", "ShutdownState"]

log = logging.getLogger(__name__)


class OperationGuard:
    """Counts one in-flight operation until ``release()`` or the ``with`` block ends."""

    __slots__ = ("_released", "_state")

    def __init__(self, state: ShutdownState) -> None:
        self._state = state
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._state._end_operation()

    def __enter__(self) -> OperationGuard:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()


class ShutdownState:
    """Tracks in-flight operations and whether shutdown has begun."""

    def __init__(self) -> None:
        # A bare lock for the counting (an operation's begin and end are on hot
        # paths: a drain, a request) and a condition on it for wait_for_drain;
        # ``_drain_waiters`` lets the end of an operation skip notify_all(),
        # which costs about 1 us even with nobody waiting.
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._drain_waiters = 0
        self._in_flight = 0
        self._shutting_down = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def is_shutdown(self) -> bool:
        return self._shutting_down

    def check(self) -> None:
        """Raise ``ShuttingDown`` if shutdown has begun."""
        if self._shutting_down:
            raise ShuttingDown("shutting down: no new operations are accepted")

    def begin_operation(self) -> OperationGuard:
        """Count an operation as in flight; raises ``ShuttingDown`` once shut down."""
        self._begin_operation()
        return OperationGuard(self)

    def _begin_operation(self) -> None:
        """``begin_operation()`` without the guard, for a hot path that calls
        ``_end_operation()`` in a ``finally``."""
        with self._lock:
            if self._shutting_down:
                raise ShuttingDown("shutting down: no new operations are accepted")
            self._in_flight += 1

    def _end_operation(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._drain_waiters and not self._in_flight:
                self._drained.notify_all()

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when shutdown begins (at once if it already has)."""
        with self._lock:
            if not self._shutting_down:
                self._callbacks.append(callback)
                return
        callback()

    def shutdown(self) -> None:
        """Refuse new operations and run the shutdown callbacks. Idempotent, never raises."""
        with self._lock:
            if self._shutting_down:
                return
            self._shutting_down = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("shutdown callback %r failed", callback)

    def wait_for_drain(self, timeout: Optional[float] = None) -> None:
        """Wait until no operation is in flight; raises ``ChannelTimeout`` on timeout."""
        with self._lock:
            self._drain_waiters += 1
            try:
                if not self._drained.wait_for(lambda: not self._in_flight, timeout):
                    raise ChannelTimeout(
                        f"{self._in_flight} operation(s) still in flight after {timeout}s"
                    )
            finally:
                self._drain_waiters -= 1
