"""``Waker``: how a channel asks a host's main thread to run its work soon.

``DccIpcChannel`` queues messages from any thread and needs the host's main
thread to come and drain them. A waker is that doorbell. ``QtWaker``
(``aurora_dcc.qt.waker``) rings it through the Qt event loop; a host without
Qt (Blender) implements these few methods over its own loop. This module
imports no Qt, so such a host can use it without one.

Usage::

    class TimerWaker(Waker):                 # e.g. over bpy.app.timers
        def bind(self, callback, on_quit):
            self._callback = callback
        def wake(self):
            self._pending = True              # polled by a main-thread timer
        def on_main_thread(self):
            return threading.current_thread() is threading.main_thread()
        def close(self):
            self._callback = None

    channel = DccIpcChannel("scene", waker=TimerWaker())
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

__all__ = ["Waker"]


class Waker(ABC):
    """Runs a bound callback on the host's main thread after ``wake()``.

    Subclass it for a host's own loop (see the module docstring) and pass an
    instance as ``DccIpcChannel(name, waker=...)``.

    Usage::

        channel = DccIpcChannel("blender", waker=BlenderWaker())
        channel.on_message(handle)      # handle() runs on the host's main thread

    Contract: ``wake()`` may be called from any thread, must be quick and must
    never raise; several wakes before the callback runs may be coalesced into
    one call. After ``close()``, ``wake()`` does nothing and the host's quit
    signal is disconnected.
    """

    @abstractmethod
    def bind(self, callback: Callable[[], None], on_quit: Callable[[], None]) -> None:
        """Run ``callback`` on the main thread after each wake; ``on_quit`` when the host quits.

        Called once, by the channel that owns this waker.
        """

    @abstractmethod
    def wake(self) -> None:
        """Ask the main thread to run the callback soon (any thread)."""

    @abstractmethod
    def on_main_thread(self) -> bool:
        """True when called on the thread the callback runs on."""

    def resume(self) -> None:
        """Main thread: run the callback again once the host has had its turn.

        Called when the callback ran out of its time budget with work left.
        The host must first handle what is due (timers, input, painting);
        ``wake()`` does when wakes are queued behind the host's own events.
        """
        self.wake()

    def process_events(self) -> None:  # noqa: B027 - optional hook
        """Let the host's event loop handle what is pending, once (main thread only).

        Used while the main thread waits for something (``wait_event``) so the
        host stays responsive. The default does nothing.
        """

    @abstractmethod
    def close(self) -> None:
        """Stop waking and disconnect from the host. Idempotent, never raises."""
