"""Waiting and calling across threads on a Qt event loop, for the Qt socket side.

A blocking call on the thread that owns the Qt objects must keep that thread's
event loop running (the reply it waits for is delivered by that loop), while a
blocking call on any other thread simply waits on a condition. :class:`LoopWaiter`
waits the first way; :class:`Invoker` runs callables on the owner thread from
anywhere.

Usage (on the Qt thread)::

    waiter, invoker, state = LoopWaiter(), Invoker(), []
    invoker.call_soon(lambda: (state.append(1), waiter.wake()))   # from any thread
    waiter.wait(lambda: bool(state), timeout=5.0)    # the Qt loop runs meanwhile
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Optional

from ..errors import IpcChannelError
from .compat import QtCore, Signal, app_instance, is_alive

__all__ = [
    "Invoker",
    "LocalLoop",
    "LoopWaiter",
    "interval_ms",
    "no_op",
    "require_app",
    "sleep_in_loop",
]

log = logging.getLogger(__name__)

_POLL_MS = 2
"""Poll interval of a Qt-thread wait that cannot rely on a signal to wake it (see LoopWaiter)."""


def require_app() -> None:
    """Raise ``IpcChannelError`` unless a ``QCoreApplication`` exists."""
    if app_instance() is None:
        raise IpcChannelError(
            "the Qt local-socket transport needs a QCoreApplication (or QApplication); "
            "create one first, or use aurora_dcc.transport.local_socket outside Qt"
        )


def no_op() -> None:
    """A poll that does nothing: the wait then only re-checks its condition every few ms."""


def _never() -> bool:
    return False


def interval_ms(seconds: float) -> int:
    """``seconds`` as a Qt timer interval (a C int of milliseconds)."""
    return min(max(0, int(seconds * 1000)), 2**31 - 1)


class Invoker(QtCore.QObject):
    """Runs callables on the thread that made it, through that thread's event loop.

    ``call_soon(fn)`` may be called from any thread; the calls run in order.

    A queued signal connected to a plain function is the cheapest cross-thread
    call: ``postEvent`` needs a Python-made ``QEvent`` and a Python ``event()``
    override, and a slot method is looked up by PySide on each call. The function
    is connected here, on the thread the calls are for: its queued calls run there
    whether the binding gives its hidden receiver the sender's thread (PySide6) or
    the thread of ``connect()``.

    Usage::

        invoker = Invoker()                       # on the Qt thread
        invoker.call_soon(lambda: print("on the Qt thread"))   # from any thread
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
        """Run ``fn()`` on the invoker's thread (its exceptions are logged)."""
        if not is_alive(self):
            return  # torn down: nothing is left to run it for
        self._calls.append(fn)
        self._request()


class LocalLoop:
    """A ``QEventLoop`` with its timeout and poll timers, made once and reused.

    Creating the loop and timers and connecting their signals cost more than
    the rest of a round trip, so a waiter keeps them between waits.

    Usage::

        LocalLoop().run(lambda: reply_arrived, timeout=5.0, poll=None)
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
        self.poll: Callable[[], None] = no_op

    def run(
        self, done: Callable[[], bool], timeout: Optional[float], poll: Optional[Callable[[], None]]
    ) -> None:
        """Run the loop until ``done()`` or ``timeout``; ``poll()`` every few ms if given."""
        self.done, self.timed_out = done, False
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout is not None:
            self.timer.start(interval_ms(timeout))
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
            self.done, self.poll = _never, no_op

    def _on_timeout(self) -> None:
        self.timed_out = True
        self.loop.quit()

    def _on_poll(self) -> None:
        self.poll()
        if self.done():
            self.loop.quit()


class LoopWaiter:
    """Blocks the owner (Qt) thread until ``done()`` holds, running its event loop meanwhile.

    It runs a local ``QEventLoop`` that ``wake()`` quits whenever the state may
    have changed; ``poll`` (if given) runs every few milliseconds meanwhile, for
    conditions no signal reports (an event set by another thread, data on a
    socket whose ``readyRead`` Qt does not re-emit while its own slot is
    running). Waits nest (a handler run by the loop may wait in turn). Other
    threads wait on a condition of their own instead.

    Usage::

        waiter = LoopWaiter()                     # on the Qt thread
        waiter.wait(lambda: bool(inbox), timeout=5.0)    # elsewhere: append, then wake()
    """

    def __init__(self) -> None:
        self._running: list[LocalLoop] = []
        self._spare: list[LocalLoop] = []  # waits nest, so there may be several

    def wait(
        self,
        done: Callable[[], bool],
        timeout: Optional[float],
        poll: Optional[Callable[[], None]] = None,
    ) -> bool:
        """Wait until ``done()`` (True) or ``timeout`` seconds pass (``done()`` then)."""
        if done():
            return True
        local = self._spare.pop() if self._spare else LocalLoop()
        self._running.append(local)
        try:
            local.run(done, timeout, poll)
        finally:
            self._running.remove(local)
            self._spare.append(local)
        return done()

    @property
    def waiting(self) -> bool:
        """True while a wait runs."""
        return bool(self._running)

    def wake(self) -> None:
        """Owner thread: make every running wait re-check its condition."""
        for local in self._running:
            local.loop.quit()


def sleep_in_loop(seconds: float) -> None:
    """Wait ``seconds`` while the Qt loop keeps running (connect's back-off)."""
    LocalLoop().run(_never, seconds, None)


def _process_events_briefly() -> None:
    """Run pending events and wait a moment for more (while no nested loop can run)."""
    QtCore.QCoreApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 1)
    time.sleep(_POLL_MS / 1000)
