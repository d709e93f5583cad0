"""What every fake DCC API shares: the main-thread rule, and running work later on it.

Real DCC APIs may only be called on the main (Qt) thread. Each fake API call
goes through ``api_call(name)``: it is counted, and a call from any other
thread is recorded in ``VIOLATIONS`` and raises, as a real DCC may crash.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from qtpy import QtCore

CALLS: list[str] = []
VIOLATIONS: list[str] = []


def on_main_thread() -> bool:
    app = QtCore.QCoreApplication.instance()
    return app is not None and QtCore.QThread.currentThread() == app.thread()


def api_call(name: str) -> None:
    """Call at the top of every fake API function."""
    CALLS.append(name)
    if not on_main_thread():
        VIOLATIONS.append(f"{name} on thread {threading.current_thread().name}")
        raise RuntimeError(f"{name} must be called on the main thread")


class _Invoker(QtCore.QObject):
    """Lives on the main thread; its queued signal runs the slot there, later, from any thread."""

    run = QtCore.Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.run.connect(self._call, QtCore.Qt.ConnectionType.QueuedConnection)

    @QtCore.Slot(object)
    def _call(self, fn: Callable[[], Any]) -> None:
        fn()


_invoker: list[_Invoker] = []


def later(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on the main thread once its event loop runs (from any thread)."""
    if not _invoker:
        if not on_main_thread():
            raise RuntimeError("fake DCC: first deferred call must come from the main thread")
        _invoker.append(_Invoker())
    _invoker[0].run.emit(lambda: fn(*args))
