"""``QtWaker``: a :class:`Waker` that rings through the Qt event loop.

Each ``wake()`` emits a no-argument signal of a small QObject that lives on
the application's thread, with a queued connection to a function that runs
the bound callback; Qt delivers the call on that thread. ``DccIpcChannel``
uses one per channel, and asks for a wake with the first message sent after a
drain found its queue empty.

Why these mechanisms (the figures are in docs/performance.md):

* ``wake()`` (any thread) emits a queued signal rather than posting a
  ``QEvent``: emitting from another thread is thread-safe and builds the queued
  call in C++, where ``postEvent`` needs a Python-made ``QEvent`` and a Python
  ``event()``/``customEvent()`` override on the way in.
* The signal is connected to a plain function, not to a slot method, which
  PySide looks up on each call. A queued call to a function runs on the thread
  of the hidden receiver the binding makes for it: PySide6 gives it the
  sender's thread, and a binding that gives it the thread of ``connect()``
  (PySide2's behaviour is not tested here) gets the same one, because the
  function is connected only when ``bind()`` runs on the application's
  thread. Bound from another thread, the waker connects its slot method.
* ``resume()`` (main thread, after a drain ran out of its time budget) starts
  a zero-interval single-shot ``QTimer`` instead of posting another event:
  with the glib event dispatcher (Qt's default on Linux) a stream of posted
  events runs ahead of timers and starves the application's own timers during
  a flood; due timers take turns, so resuming through one keeps them running.

Usage::

    app = QtCore.QCoreApplication.instance()
    waker = QtWaker()
    waker.bind(lambda: print("on the main thread"), on_quit=lambda: None)
    threading.Thread(target=waker.wake).start()     # the callback runs in app's loop
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Optional

from ..channel.waker import Waker
from .compat import QtCore, Signal, app_instance, is_alive

__all__ = ["QtWaker"]

log = logging.getLogger(__name__)


def _guarded(callback: Callable[[], None]) -> Callable[[], None]:
    """``callback`` as a plain function that logs its exceptions instead of raising."""

    def run() -> None:
        try:
            callback()
        except Exception:  # never let an exception unwind into Qt
            log.exception("wake callback %r raised", callback)

    return run


class _WakeReceiver(QtCore.QObject):
    """The QObject on the main thread whose ``wake_requested`` signal wakes it.

    ``run_callback`` is the bound callback as a plain function (what the signal
    is connected to when it can be); ``run`` is the same as a slot method.
    """

    wake_requested = Signal()

    def __init__(self, callback: Callable[[], None], on_quit: Callable[[], None]) -> None:
        super().__init__()
        self.run_callback = _guarded(callback)
        self._on_quit = on_quit

    def run(self) -> None:
        self.run_callback()

    def about_to_quit(self) -> None:
        try:
            self._on_quit()
        except Exception:
            log.exception("quit callback %r raised", self._on_quit)


class QtWaker(Waker):
    """Wakes the thread of the running ``QCoreApplication`` (see the module docstring).

    Raises ``RuntimeError`` when no ``QCoreApplication`` exists: it creates none.

    Usage::

        channel = DccIpcChannel("scene", waker=QtWaker())   # what the default does
    """

    def __init__(self) -> None:
        app = app_instance()
        if app is None:
            raise RuntimeError(
                "QtWaker needs a QCoreApplication: create the application first "
                "(or, for a channel made earlier, call channel.attach() once it exists)"
            )
        self._app_thread = app.thread()
        self._receiver: Optional[_WakeReceiver] = None
        self._lock = threading.Lock()  # close() waits out a wake() in progress
        self._closed = False
        self._main_ident: Optional[int] = None
        self._quit_connected = False
        self._resume_timer: Optional[QtCore.QTimer] = None
        self._emit_wake: Callable[[], None] = lambda: None

    def bind(self, callback: Callable[[], None], on_quit: Callable[[], None]) -> None:
        if self._receiver is not None:
            raise RuntimeError("QtWaker.bind() was already called")
        if QtCore.QThread.currentThread() == self._app_thread:
            self._main_ident = threading.get_ident()

        def run_on_main_thread() -> None:
            self._main_ident = threading.get_ident()
            callback()

        first = callback if self._main_ident is not None else run_on_main_thread
        receiver = _WakeReceiver(first, on_quit)
        resume_timer = QtCore.QTimer(receiver)  # a child: moves to the main thread with it
        resume_timer.setSingleShot(True)
        resume_timer.setInterval(0)
        resume_timer.timeout.connect(receiver.run)
        queued = QtCore.Qt.ConnectionType.QueuedConnection
        if self._main_ident is not None:
            # A plain function, not the slot method: see the module docstring.
            receiver.wake_requested.connect(receiver.run_callback, queued)
        else:
            receiver.wake_requested.connect(receiver.run, queued)
        if receiver.thread() != self._app_thread:
            receiver.moveToThread(self._app_thread)
        self._resume_timer = resume_timer
        self._emit_wake = receiver.wake_requested.emit
        app = app_instance()
        if app is not None:
            app.aboutToQuit.connect(receiver.about_to_quit)
            self._quit_connected = True
        self._receiver = receiver

    def wake(self) -> None:
        with self._lock:
            if not self._closed:
                self._emit_wake()  # a no-op until bind()

    def resume(self) -> None:
        if not self._closed and self._resume_timer is not None:
            self._resume_timer.start()

    def on_main_thread(self) -> bool:
        if self._main_ident is not None:
            return threading.get_ident() == self._main_ident
        return bool(QtCore.QThread.currentThread() == self._app_thread)

    def process_events(self) -> None:
        if app_instance() is not None:
            QtCore.QCoreApplication.processEvents()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        receiver = self._receiver
        if receiver is None or not is_alive(receiver):
            return
        app = app_instance()
        if self._quit_connected and app is not None:
            self._quit_connected = False
            with contextlib.suppress(RuntimeError, TypeError):  # the app is being torn down
                app.aboutToQuit.disconnect(receiver.about_to_quit)
        if self.on_main_thread():
            if self._resume_timer is not None:
                self._resume_timer.stop()
            receiver.deleteLater()
