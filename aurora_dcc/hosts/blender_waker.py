"""``BlenderWaker``: the main-thread doorbell of a Blender process, over ``bpy.app.timers``.

Blender has no Qt event loop to post work to; Python runs on its main thread
only in callbacks Blender makes: operators, handlers and timers. The waker
registers one persistent ``bpy.app.timers`` function (:meth:`BlenderWaker.tick`)
that runs the bound callback (a ``DccIpcChannel``'s drain, which keeps to
its own time budget) whenever work is pending, and returns 0.0 so that it is
due on every pass of Blender's main loop. Blender's loop sleeps a few
milliseconds per pass when it has no events, so an idle tick costs one
Python call per pass; a positive interval would save little and would make
a tick that an interrupted sleep brings forward still wait for its time.

``wake()`` (any thread) only sets a flag; when an interrupt function is set
(:meth:`BlenderWaker.set_interrupt`, installed by the host where the
platform allows it) it also cuts the loop's sleep short, so the timer runs at
once instead of after the sleep. The work itself always runs in the timer on
the main thread, never in a signal handler or on the waking thread.

With ``bpy`` imported as a module (or ``blender -b``) nothing runs the
timers: :meth:`BlenderWaker.pump` does the same work on the calling thread.

Usage::

    waker = BlenderWaker()
    channel = DccIpcChannel("scene", waker=waker)     # binds: registers the timer
    channel.on_message(handle)                         # runs in the timer, main thread
    waker.pump(0.5)                                    # module mode: run it here for 0.5 s
    channel.shutdown()                                 # closes the waker: timer unregistered
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Optional

from ..channel.waker import Waker

__all__ = ["BlenderWaker"]

log = logging.getLogger(__name__)

Interrupt = Callable[[], None]
DrainContext = Callable[[], contextlib.AbstractContextManager[None]]

_REFILL_WAIT = 0.002
"""How long a tick waits for producers it made room for (see ``set_refill``): a
reader released from the read-ahead limit queues its next requests well within it."""


class BlenderWaker(Waker):
    """Runs a bound callback on Blender's main thread, from a persistent timer (see module doc).

    The thread that creates the waker is its main thread (Blender's main
    thread in the application; the thread that calls :meth:`pump` in module
    mode). ``idle_interval`` is what the timer returns when no work is
    pending: 0.0 (the default) keeps it due on every pass of the main loop.

    Usage::

        waker = BlenderWaker()
        waker.bind(drain, on_quit)           # main thread: registers the timer
        waker.wake()                         # any thread: drain runs in the next tick
        waker.call_later(0.05, check)        # main thread: check() runs in a tick 50 ms on
        waker.close()                        # unregisters the timer
    """

    def __init__(self, *, idle_interval: float = 0.0) -> None:
        self.idle_interval = idle_interval
        self._owner = threading.get_ident()
        self._callback: Optional[Callable[[], None]] = None
        self._pending = False
        self._closed = False
        self._in_tick = False
        self._timer_registered = False
        self._interrupt: Optional[Interrupt] = None
        self._served: Optional[Callable[[], None]] = None  # tells the interrupt a tick ran
        self._drain_context: Optional[DrainContext] = None
        self._refill: Optional[Callable[[], bool]] = None
        self._refill_budget = 0.0
        self._pumping = 0  # pump() calls in progress: wake() then sets _woken
        self._woken = threading.Event()
        self._later: list[tuple[float, int, Callable[[], None]]] = []  # heap: (due, seq, fn)
        self._seq = itertools.count()
        # Blender keys timers by the function object: register and unregister this one.
        self._timer_fn: Callable[[], Optional[float]] = self.tick

    # -- the Waker interface --------------------------------------------------

    def bind(self, callback: Callable[[], None], on_quit: Callable[[], None]) -> None:
        """Main thread: run ``callback`` in the timer after each wake; registers the timer.

        ``on_quit`` is not watched here: the host closes its channel when
        Blender quits (add-on unregister, ``atexit``).
        """
        import bpy

        self._callback = callback
        bpy.app.timers.register(self._timer_fn, first_interval=0.0, persistent=True)
        self._timer_registered = True

    def wake(self) -> None:
        """Any thread: run the callback in the next tick (and cut the loop's sleep short)."""
        if not self._pending:
            self._pending = True
            if self._pumping:
                self._woken.set()
        # Interrupt even when already pending: the flag may be stale (a drain took this
        # message before it was set), and the interrupt itself sends nothing while a
        # signal is in flight. The channel wakes once per batch, not per message.
        interrupt = self._interrupt
        if interrupt is not None and threading.get_ident() != self._owner:
            try:
                interrupt()
            except Exception:  # wake() must never raise; the timer still polls
                self._interrupt = None
                log.exception("main-loop wake failed; falling back to the timer poll")

    def resume(self) -> None:
        """Main thread, out of budget: run again in the next tick, after Blender's own events.

        No interrupt: the timer is due on the next pass anyway, and Blender
        must first handle its input and redraws.
        """
        self._pending = True

    def on_main_thread(self) -> bool:
        return threading.get_ident() == self._owner

    def close(self) -> None:
        """Stop running the callback; unregister the timer (main thread, else at its next tick)."""
        self._closed = True
        self._callback = None
        self._interrupt = None
        self._served = None
        self._woken.set()  # a pump() waiting returns
        if self.on_main_thread():  # the heap and Blender's timers belong to the main thread
            self._later.clear()
            if self._timer_registered and not self._in_tick:
                self._unregister_timer()

    # -- Blender side ---------------------------------------------------------

    def set_interrupt(
        self, interrupt: Optional[Interrupt], served: Optional[Callable[[], None]] = None
    ) -> None:
        """Set (or clear, with None) the function ``wake()`` calls to cut Blender's sleep short.

        ``served()``, when given, is called at the start of every tick (main
        thread): the interrupt then knows its wake was answered by this timer,
        not by some other Python code that happened to run first.

        It is called from the waking thread on each wake (the channel wakes on
        the first message after it ran dry); it must be quick, coalesce
        interrupts itself, and must not raise (if it does, it is dropped and the
        timer's poll carries on alone).
        """
        self._interrupt = None if self._closed else interrupt
        self._served = served if self._interrupt is not None else None

    def set_drain_context(self, context: Optional[DrainContext]) -> None:
        """Run each drain inside ``context()`` (None: as it is).

        The host passes its server's ``batch``: the responses one drain sends
        to a client go out in one write instead of one write each, so the main
        thread spends its budget on handlers, not on many small socket writes.
        """
        self._drain_context = context

    def set_refill(self, refill: Optional[Callable[[], bool]], budget: float = 0.0) -> None:
        """After a drain, if ``refill()`` is true, wait for more work, within ``budget``.

        ``refill()`` (main thread) says whether producers waited for the main
        thread to make room (the host's read-ahead limit): their next messages
        are moments away, so the tick waits for them, GIL released, and drains
        again while they keep coming, instead of leaving them to the next pass
        of Blender's loop, a sleep away. Only while no interrupt is set: with
        one, their next message cuts that sleep short. ``budget`` bounds the
        tick, drains included. ``refill=None`` turns this off.
        """
        self._refill = refill
        self._refill_budget = budget

    @property
    def timer_registered(self) -> bool:
        """Whether Blender holds the waker's timer (False once closed, on the main thread)."""
        import bpy

        return bool(bpy.app.timers.is_registered(self._timer_fn))

    @property
    def interrupt(self) -> Optional[Interrupt]:
        """The function set by :meth:`set_interrupt`, or None (the timer poll alone)."""
        return self._interrupt

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Main thread: run ``fn()`` in the first tick (or pump) at least ``delay`` seconds on."""
        heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), fn))

    def tick(self) -> Optional[float]:
        """The timer function (Blender's main thread): run what is due; the next interval.

        Returns None once closed, which unregisters the timer.
        """
        if self._closed:
            self._timer_registered = False
            return None
        served = self._served
        if served is not None:
            try:
                served()
            except Exception:  # a timer that raises is unregistered by Blender: never raise
                self._served = None
                log.exception("main-loop wake's served() failed")
        self._in_tick = True
        try:
            self._run_due()
        finally:
            self._in_tick = False
        if self._closed:
            self._timer_registered = False
            return None
        if self._pending:
            return 0.0
        interval = self.idle_interval
        if self._later and interval > 0.0:
            interval = max(0.0, min(interval, self._later[0][0] - time.monotonic()))
        return interval

    def pump(
        self, timeout: Optional[float] = 0.0, until: Optional[Callable[[], bool]] = None
    ) -> None:
        """Run the timer's work on this (the waker's) thread, for module mode.

        With ``bpy`` imported as a module, or in ``blender -b``, Blender's
        main loop does not run and timers never fire: call this instead. It
        runs what is queued (requests, ``call_in_main_thread`` calls,
        ``call_later`` functions that are due), then waits for more, until
        ``timeout`` seconds have passed (0: only what is queued now; None: no
        limit), ``until()`` returns true, or the waker is closed.

        Raises ``RuntimeError`` on another thread than the one the waker (its
        host) was created on: handlers run on that thread.
        """
        if not self.on_main_thread():
            raise RuntimeError("pump() must be called on the thread the Blender host started on")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pumping += 1
        try:
            while True:
                self._woken.clear()
                self._run_due()
                if self._closed or (until is not None and until()):
                    return
                if self._pending:
                    continue
                now = time.monotonic()
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return
                if self._later:
                    due = max(0.0, self._later[0][0] - now)
                    wait = due if wait is None else min(wait, due)
                if until is not None:
                    wait = 0.05 if wait is None else min(wait, 0.05)  # re-check until()
                self._woken.wait(wait)
        finally:
            self._pumping -= 1

    # -- internals -------------------------------------------------------------

    def _run_due(self) -> None:
        if self._pending:
            started = time.monotonic()
            self._drain()
            refill = self._refill
            # With the interrupt, the producers' next send wakes the loop at once:
            # short ticks, and Blender handles its events in between.
            if refill is not None and self._interrupt is None and refill():
                self._drain_refills(started + self._refill_budget)
        later = self._later
        if later and later[0][0] <= time.monotonic():
            self._run_later()

    def _drain(self) -> None:
        self._pending = False  # before the drain: a wake during it brings another tick
        callback = self._callback
        if callback is None:
            return
        context = self._drain_context
        try:
            if context is None:
                callback()
            else:
                with context():
                    callback()
        except Exception:  # never raise into Blender's timer machinery
            log.exception("main-thread drain raised")

    def _drain_refills(self, deadline: float) -> None:
        """Producers wait for room: wait for what they queue next and drain it, in budget."""
        self._pumping += 1  # wake() now sets _woken
        try:
            while not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    return
                self._woken.clear()
                if not self._pending and not self._woken.wait(min(remaining, _REFILL_WAIT)):
                    return  # the producers are done, or slower than a refill
                if not self._pending:
                    return  # closed meanwhile
                self._drain()
        finally:
            self._pumping -= 1

    def _run_later(self) -> None:
        later = self._later
        now = time.monotonic()
        while later and later[0][0] <= now:
            fn = heapq.heappop(later)[2]
            try:
                fn()
            except Exception:
                log.exception("call_later function %r raised", fn)

    def _unregister_timer(self) -> None:
        self._timer_registered = False
        try:
            import bpy

            timers: Any = bpy.app.timers
            if timers.is_registered(self._timer_fn):
                timers.unregister(self._timer_fn)
        except Exception:  # Blender is finalizing: nothing left to unregister from
            log.debug("timer not unregistered", exc_info=True)
