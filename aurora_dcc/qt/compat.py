"""Qt binding differences, kept in one place (imported only by the Qt-side modules).

Everything Qt goes through ``qtpy`` so the package runs under PySide6 and the
PySide2 that older Maya/Houdini/Nuke/Max ship. The one thing qtpy does not
cover, asking whether a QObject's C++ side still exists, lives here.

Usage::

    from aurora_dcc.qt.compat import QtCore, is_alive, app_instance, on_qt_main_thread
    app = app_instance()          # QCoreApplication.instance() or None
    if is_alive(obj):
        obj.deleteLater()
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

import qtpy
from qtpy import QtCore

__all__ = [
    "QtCore",
    "Signal",
    "app_instance",
    "is_alive",
    "local_socket_error_signal",
    "on_qt_main_thread",
]

# qtpy maps every binding's signal class to ``QtCore.Signal``; its type stubs
# do not re-export the name, hence the lookup.
Signal: Any = getattr(QtCore, "Signal")  # noqa: B009


def _load_is_valid() -> Callable[[Any], bool]:
    # The shiboken that matches the binding qtpy picked (a host may have both).
    names = ("shiboken2", "shiboken6") if qtpy.PYSIDE2 else ("shiboken6", "shiboken2")
    for module_name in names:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        is_valid: Callable[[Any], bool] = module.isValid
        return is_valid
    return lambda obj: obj is not None  # PyQt has no shiboken: assume alive


_is_valid = _load_is_valid()


def is_alive(obj: Any) -> bool:
    """True if ``obj`` is not None and its C++ object has not been deleted."""
    if obj is None:
        return False
    try:
        return bool(_is_valid(obj))
    except (RuntimeError, TypeError):
        return False


def app_instance() -> Optional[Any]:
    """The running ``QCoreApplication`` (or subclass), or None if none exists (yet)."""
    app = QtCore.QCoreApplication.instance()
    return app if is_alive(app) else None


def on_qt_main_thread() -> bool:
    """True on the thread that owns the Qt application (False when there is none)."""
    app = app_instance()
    return app is not None and QtCore.QThread.currentThread() == app.thread()


def local_socket_error_signal(socket: Any) -> Any:
    """A ``QLocalSocket``'s error signal: ``errorOccurred`` (Qt >= 5.15), else ``error``."""
    signal = getattr(socket, "errorOccurred", None)
    return signal if signal is not None else socket.error
