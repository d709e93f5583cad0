"""``MainLoopWake``: cut a host main loop's idle sleep short with a signal.

Blender's main loop, with no window events, sleeps a fixed few milliseconds
per pass, and a ``bpy.app.timers`` callback only runs between those sleeps:
work a socket thread queues for the main thread waits out the rest of the
sleep (the figures are in docs/performance.md). A signal delivered to the
sleeping thread ends ``nanosleep``/``usleep`` early (they return ``EINTR``
whatever the flags), so the loop goes round and the timer drains at once.

How it stays harmless:

* The signal is aimed at the main thread only (``signal.pthread_kill``), never
  at the process, so no other thread is interrupted.
* The handler does nothing: the drain runs in the host's timer, as before,
  never in a signal handler. The handler is installed with ``SA_RESTART``
  (``signal.siginterrupt(signum, False)``), so reads, writes and the like on
  the main thread restart instead of failing with ``EINTR``.
* At most one signal is in flight: ``wake()`` sends none while an earlier
  one has not been answered (the host's timer calls ``served()`` when it
  runs), so a flood of requests is not a storm of signals (and
  ``DccIpcChannel`` asks for a wake only with the first message after a
  drain emptied its queue). A ``wake()`` on the main thread sends nothing:
  that thread is awake.
* A signal that lands while the main thread is busy, just before it goes to
  sleep, wakes nothing. A helper thread therefore looks shortly after each
  signal whether it was answered, and if not sends it again, a few times at
  most.
* It takes a real-time signal (the first free of ``SIGRTMIN+6`` ..
  ``SIGRTMIN+9``; ``SIGUSR2`` where there are none), never one that already
  has a handler, and ``uninstall()`` puts the previous handler back once no
  signal of ours can still arrive.
* Where ``pthread_kill`` does not exist (Windows), or the wake is turned off,
  ``install()`` returns False and the host keeps its timer poll.

A studio turns it off, or picks the signal, with ``AURORA_BLENDER_WAKE``:
``0``/``off`` (no wake), ``on``/``1``/unset (the default signal), or a signal
(``SIGRTMIN+3``, ``SIGUSR1``, ``40``). The environment's ``off`` wins over
the constructor; a signal named there wins over the default, not over a
``signum`` given to the constructor.

Usage::

    wake = MainLoopWake()
    wake.install()                 # main thread; False: no wake, keep polling
    # socket thread, after queueing work for the main thread's timer:
    wake.wake()
    # that timer, on the main thread, each time it runs (before it drains):
    wake.served()
    # main thread, when the host stops:
    wake.uninstall()

    # or the process-wide one, shared by every host (what BlenderHost uses):
    interrupt = install_wake()     # main thread; None: no wake
    ...                            # interrupt() as wake.wake(), wake_served() as served()
    uninstall_wake()               # once per install_wake()
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Optional, Union

__all__ = [
    "ENV_WAKE",
    "MainLoopWake",
    "current_wake",
    "install_wake",
    "parse_wake_setting",
    "supported",
    "uninstall_wake",
    "wake_served",
]

log = logging.getLogger(__name__)

ENV_WAKE = "AURORA_BLENDER_WAKE"

# Offsets from SIGRTMIN tried in turn: clear of the lowest ones, which
# libraries reach for first (SIGRTMIN itself is a common timer signal).
_RT_OFFSETS = (6, 7, 8, 9)

_OFF = frozenset({"0", "off", "no", "false", "disable", "disabled"})
_ON = frozenset({"", "1", "on", "yes", "true", "enable", "enabled", "default"})

# The retry schedule: how long after a signal the retry thread looks whether
# its handler ran, and how many times at most it sends again. Short against
# the main loop's idle sleep; together about one such sleep, after which the
# timer's poll has run anyway.
RETRY_AFTER = 0.0005
RETRIES = 10

# A module-level flag per process: the "could not install" message is logged once.
_warned = False


def supported() -> bool:
    """True where a signal can be aimed at one thread (Linux, macOS, other Unix)."""
    return hasattr(signal, "pthread_kill") and hasattr(signal, "siginterrupt")


def parse_wake_setting(value: Optional[str]) -> Union[bool, int]:
    """``AURORA_BLENDER_WAKE``'s value: False (off), True (default signal) or a signal number.

    Raises ``ValueError`` for a value that is none of these.
    """
    text = (value or "").strip()
    lowered = text.lower()
    if lowered in _OFF:
        return False
    if lowered in _ON:
        return True
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    for base in ("SIGRTMIN", "SIGRTMAX"):
        if name.startswith(base) and hasattr(signal, base):
            rest = name[len(base) :]
            offset = 0
            if rest:
                if rest[0] not in "+-" or not rest[1:].isdigit():
                    raise ValueError(f"{ENV_WAKE}={value!r}: not a signal")
                offset = int(rest[1:]) * (1 if rest[0] == "+" else -1)
            return int(getattr(signal, base)) + offset
    found = getattr(signal, name, None)
    if isinstance(found, int) and name.startswith("SIG") and not name.startswith("SIG_"):
        return int(found)
    raise ValueError(f"{ENV_WAKE}={value!r}: expected 0/off, 1/on or a signal name or number")


def _default_candidates() -> list[int]:
    rtmin = getattr(signal, "SIGRTMIN", None)
    rtmax = getattr(signal, "SIGRTMAX", None)
    if rtmin is not None and rtmax is not None:
        return [int(rtmin) + n for n in _RT_OFFSETS if int(rtmin) + n <= int(rtmax)]
    usr2 = getattr(signal, "SIGUSR2", None)
    return [int(usr2)] if usr2 is not None else []


def _log_once(message: str, *args: object) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message, *args)
    else:
        log.debug(message, *args)


class MainLoopWake:
    """Interrupts the main thread's idle sleep on ``wake()`` (see the module docstring).

    ``signum`` picks the signal (default: the first free real-time one);
    ``enabled=False`` turns the wake off. ``wake()`` is safe from any thread at
    any time, also before ``install()`` and after ``uninstall()`` (then it does
    nothing).

    Usage::

        wake = MainLoopWake(enabled=prefs.fast_wake)
        if not wake.install():
            log.info("no main-loop wake: requests wait for the timer poll")
    """

    def __init__(self, signum: Optional[int] = None, *, enabled: bool = True) -> None:
        self._requested = signum
        self._enabled = enabled
        self._signum: Optional[int] = None
        self._previous: Any = None  # what signal.getsignal() gave
        self._target: Optional[int] = None  # the main thread's ident while installed
        self._in_flight = False  # sent, and not answered yet (see served())
        self._host_reports = False  # served() was called: the handler no longer answers
        self._lock = threading.Lock()  # uninstall() waits out a wake() that is sending
        self._sent = threading.Event()  # set after each first signal, for the retry thread
        self._retry_thread: Optional[threading.Thread] = None

    @property
    def installed(self) -> bool:
        """True while wakes send a signal."""
        return self._target is not None

    @property
    def signum(self) -> Optional[int]:
        """The signal in use while installed, else None."""
        return self._signum

    def _handle(self, signum: int, frame: Any) -> None:
        """The handler: next to nothing. Its delivery has already ended the loop's sleep."""
        if not self._host_reports:
            self._in_flight = False

    def served(self) -> None:
        """Main thread, at the start of each timer call that drains: the wake was answered.

        The next ``wake()`` may send a signal again, and the retry thread stops.
        A host that calls this (``BlenderWaker`` does) is tracked exactly;
        without it, a signal counts as answered once its handler has run,
        which Python code of someone else's timer or panel can do too early.
        """
        self._host_reports = True
        self._in_flight = False

    def _candidates(self) -> Optional[list[int]]:
        """The signals to try, or None when the wake is turned off."""
        try:
            setting = parse_wake_setting(os.environ.get(ENV_WAKE))
        except ValueError as exc:
            _log_once("%s; main-loop wake off", exc)
            return None
        if setting is False or not self._enabled:
            return None
        if self._requested is not None:
            return [self._requested]
        if setting is not True:
            return [setting]
        return _default_candidates()

    def install(self) -> bool:
        """Main thread: install the handler; True when wakes will now send signals.

        False (logged once per process) when the wake is off, the platform has
        no ``pthread_kill``, this is not the main thread, or every candidate
        signal already has a handler. Idempotent.
        """
        if self._target is not None:
            return True
        candidates = self._candidates()
        if candidates is None:
            log.info("main-loop wake turned off (%s or enabled=False)", ENV_WAKE)
            return False
        if not supported():
            log.info("no pthread_kill on this platform: no main-loop wake, timer poll only")
            return False
        if threading.current_thread() is not threading.main_thread():
            _log_once("MainLoopWake.install() must run on the main thread; no wake")
            return False
        for signum in candidates:
            try:
                previous = signal.getsignal(signum)
            except (ValueError, OSError):
                continue  # not a valid signal here
            if previous != signal.SIG_DFL:
                continue  # someone else's (None: a handler installed outside Python)
            try:
                signal.signal(signum, self._handle)
                signal.siginterrupt(signum, False)  # SA_RESTART: other calls restart
            except (ValueError, OSError) as exc:
                log.debug("signal %d refused: %s", signum, exc)
                continue
            self._signum = signum
            self._previous = previous
            self._in_flight = False
            self._target = threading.get_ident()
            self._sent.clear()
            self._retry_thread = threading.Thread(
                target=self._retry_sent_signals, name="aurora-main-loop-wake", daemon=True
            )
            self._retry_thread.start()
            log.debug("main-loop wake installed on signal %d", signum)
            return True
        _log_once(
            "main-loop wake: signals %s all have handlers already; timer poll only", candidates
        )
        return False

    def wake(self) -> None:
        """Any thread: end the main thread's sleep, unless a signal is in flight. Never raises."""
        if self._in_flight:
            return
        target = self._target
        if target is None or threading.get_ident() == target:
            return  # not installed, or on the main thread: it is awake
        with self._lock:
            if not self._send():
                return
        self._sent.set()  # the retry thread watches this signal

    def _send(self) -> bool:
        """With ``_lock`` held: signal the main thread; False once uninstalled."""
        target, signum = self._target, self._signum
        if target is None or signum is None:
            return False
        self._in_flight = True
        try:
            signal.pthread_kill(target, signum)
        except OSError:  # the main thread has gone (interpreter teardown)
            self._target = None
            return False
        return True

    def _retry_sent_signals(self) -> None:
        """Retry thread: send again while a signal has not been answered.

        A signal that arrives while the main thread is busy rather than asleep
        (a request that came in just after a drain, before the loop's next
        sleep) wakes nothing, and its work would wait out that whole sleep. So
        a short while after each signal this thread looks whether it was
        answered (``served()``, or else its handler ran), and sends another if
        not; a few times at most, then the timer poll takes over.
        """
        sent, lock = self._sent, self._lock
        while True:
            sent.wait()
            sent.clear()
            if self._target is None:
                return
            for _ in range(RETRIES):
                time.sleep(RETRY_AFTER)
                with lock:
                    if not self._in_flight or not self._send():
                        break

    def uninstall(self) -> None:
        """Main thread: stop waking and put the previous handler back. Idempotent, never raises."""
        if self._target is None:
            return
        if threading.get_ident() != self._target:
            _log_once("MainLoopWake.uninstall() must run on the main thread; left installed")
            return
        with self._lock:  # after this, no wake() or retry can send
            self._target = None
            signum, previous = self._signum, self._previous
        self._sent.set()  # the retry thread sees no target and ends
        if self._retry_thread is not None:
            self._retry_thread.join(timeout=1.0)
            self._retry_thread = None
        if signum is None:
            return
        try:
            # A system call returns through the kernel, which delivers any of
            # our signals still pending on this thread; the interpreter runs
            # its Python handler at the next call. Only then may the previous
            # handler (often "terminate") come back.
            signal.pthread_sigmask(signal.SIG_BLOCK, [])
            self._handle(signum, None)
            signal.signal(signum, previous)
        except (ValueError, OSError):
            log.exception("restoring the handler of signal %d failed", signum)
        self._signum = None
        self._previous = None
        self._in_flight = False


# The process-wide wake: a signal handler belongs to the process, so hosts share it.
_shared: Optional[MainLoopWake] = None
_users = 0


def install_wake(enabled: Optional[bool] = None) -> Optional[Callable[[], None]]:
    """Main thread: install the process's wake (once); its ``wake`` function, or None.

    None when ``enabled`` is False, ``AURORA_BLENDER_WAKE`` turns it off, the
    platform has no ``pthread_kill`` or no signal is free; ``enabled=None``
    lets the environment decide (on by default). Pair each call that returned
    a function with one ``uninstall_wake()``.
    """
    global _shared, _users
    if enabled is False:
        return None
    if _shared is None:
        wake = MainLoopWake()
        if not wake.install():
            return None
        _shared = wake
    _users += 1
    return _shared.wake


def wake_served() -> None:
    """Main thread: ``served()`` of the process-wide wake, if one is installed."""
    wake = _shared
    if wake is not None:
        wake.served()


def current_wake() -> Optional[MainLoopWake]:
    """The process-wide wake while ``install_wake()`` has it installed, else None."""
    return _shared


def uninstall_wake() -> None:
    """Main thread: release one ``install_wake()``; the last one restores the old handler."""
    global _shared, _users
    if _shared is None:
        return
    _users -= 1
    if _users <= 0:
        _shared.uninstall()
        _shared = None
        _users = 0
