"""``ShutdownState``: in-flight operation guards, drain, and shutdown.

One instance may be shared by several channels (``ThreadChannel.pair`` does
this), so shutting one down shuts them all down together.

Usage::

    state = ShutdownState()
    with state.begin_operation():      # raises ShuttingDown once shut down
        handle(message)
    state.begin_unguarded()            # the same without a guard object (hot paths)
    try:
        handle(message)
    finally:
        state.end_operation()
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
    """Counts one in-flight operation until ``release()`` or the ``with`` block ends.

    Usage::

        with state.begin_operation():         # the guard
            handle(message)
    """

    __slots__ = ("_released", "_state")

    def __init__(self, state: ShutdownState) -> None:
        self._state = state
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._state.end_operation()

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
    """Tracks in-flight operations and whether shutdown has begun.

    Usage::

        state = ShutdownState()
        state.on_shutdown(lambda: log.info("closing"))
        state.shutdown()                      # refuse new operations, run callbacks
        state.shutting_down                   # True
    """

    def __init__(self) -> None:
        # A bare lock (begin/end are on hot paths); the waiter count lets end skip notify_all().
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._drain_waiters = 0
        self._in_flight = 0
        self.shutting_down = False
        """True once ``shutdown()`` has begun. Read it freely (a plain attribute, for hot
        paths); only ``shutdown()`` sets it."""
        self._callbacks: list[Callable[[], None]] = []

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def is_shutdown(self) -> bool:
        return self.shutting_down

    def check(self) -> None:
        """Raise ``ShuttingDown`` if shutdown has begun."""
        if self.shutting_down:
            raise ShuttingDown("shutting down: no new operations are accepted")

    def begin_operation(self) -> OperationGuard:
        """Count an operation as in flight; raises ``ShuttingDown`` once shut down."""
        self.begin_unguarded()
        return OperationGuard(self)

    def begin_unguarded(self) -> None:
        """``begin_operation()`` without the guard object, for a hot path.

        The caller must call ``end_operation()`` exactly once, in a ``finally``.
        """
        with self._lock:
            if self.shutting_down:
                raise ShuttingDown("shutting down: no new operations are accepted")
            self._in_flight += 1

    def end_operation(self) -> None:
        """End an operation begun with ``begin_unguarded()`` (a guard calls it for you)."""
        with self._lock:
            self._in_flight -= 1
            if self._drain_waiters and not self._in_flight:
                self._drained.notify_all()

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when shutdown begins (at once if it already has)."""
        with self._lock:
            if not self.shutting_down:
                self._callbacks.append(callback)
                return
        callback()

    def shutdown(self) -> None:
        """Refuse new operations and run the shutdown callbacks. Idempotent, never raises."""
        with self._lock:
            if self.shutting_down:
                return
            self.shutting_down = True
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
