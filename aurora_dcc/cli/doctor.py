"""``aurora-dcc doctor``: what this machine's Python, Qt binding and hosts look like.

One line per check, ``ok``, ``warn`` or ``FAIL`` first; the exit status is 1
when a check failed. Checks: Python, aurora_dcc, the Qt binding (and the
PySide6 6.12.0 defect), orjson, the runtime folder's owner and permissions,
and every live host (connect and ping).

Usage::

    code = doctor(timeout=5.0)       # prints the report; 0 when nothing failed
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Optional

from .. import __version__
from ..errors import IpcChannelError
from ..process.discovery import list_hosts
from ..protocol.handshake import PROTOCOL_VERSION
from ..transport.address import is_windows, runtime_dir
from .client import open_client
from .exit_codes import CliError, ExitCode

__all__ = ["BROKEN_BINDINGS", "doctor"]

BROKEN_BINDINGS = {
    ("PySide6", "6.12.0"): (
        "PySide6 6.12.0 loses a reference on every processEvents() and queued signal and "
        "aborts the interpreter after about 2,000 of them ('Fatal Python error: bool_dealloc'"
        " or 'none_dealloc'); use PySide6 < 6.12 (the test extras pin >=6.8.3,<6.12)"
    ),
}
"""Qt bindings with a known defect that breaks a host: (binding, version) -> why."""

_OK, _WARN, _FAIL = "ok  ", "warn", "FAIL"


class _Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, what: str, text: str) -> None:
        self.failed = self.failed or status == _FAIL
        sys.stdout.write(f"{status}  {what:<12} {text}\n")
        sys.stdout.flush()


def doctor(timeout: float) -> int:
    """Print the report; ``ExitCode.CALL_FAILED`` if any check failed, else 0."""
    report = _Report()
    version = ".".join(str(part) for part in sys.version_info[:3])
    python_ok = sys.version_info >= (3, 9)
    report.line(_OK if python_ok else _FAIL, "python", f"{version} ({sys.executable})")
    location = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    report.line(_OK, "aurora_dcc", f"{__version__}, protocol {PROTOCOL_VERSION} ({location})")
    _check_binding(report)
    _check_orjson(report)
    _check_runtime_dir(report)
    _check_hosts(report, timeout)
    return ExitCode.CALL_FAILED if report.failed else ExitCode.OK


def _check_binding(report: _Report) -> None:
    try:
        import qtpy
    except Exception as exc:  # qtpy raises its own errors when it finds no binding
        report.line(_WARN, "qt binding", f"none ({exc}): hosts need one; tools do not")
        return
    binding = str(qtpy.API_NAME)
    binding_version = str(
        getattr(qtpy, "PYSIDE_VERSION", None) or getattr(qtpy, "PYQT_VERSION", "")
    )
    report.line(_OK, "qt binding", f"{binding} {binding_version} (Qt {qtpy.QT_VERSION}) via qtpy")
    defect = BROKEN_BINDINGS.get((binding, binding_version))
    if defect is not None:
        report.line(_WARN, "qt defect", defect)


def _check_orjson(report: _Report) -> None:
    try:
        import orjson
    except ImportError:
        report.line(_WARN, "orjson", "missing: the standard json module is used (slower)")
        return
    report.line(_OK, "orjson", str(getattr(orjson, "__version__", "installed")))


def _check_runtime_dir(report: _Report) -> None:
    try:
        path = runtime_dir(create=False)
    except IpcChannelError as exc:
        report.line(_FAIL, "runtime dir", str(exc))
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        report.line(_OK, "runtime dir", f"{path} (not created yet: no host has run)")
        return
    mode = stat.filemode(st.st_mode)
    owner = "" if is_windows() else f", owner uid {st.st_uid}"
    report.line(_OK, "runtime dir", f"{path} ({mode}{owner})")


def _check_hosts(report: _Report, timeout: float) -> None:
    try:
        records = list_hosts()
    except IpcChannelError as exc:  # the runtime folder was refused: reported above
        report.line(_FAIL, "hosts", f"cannot list them: {exc}")
        return
    report.line(_OK, "hosts", f"{len(records)} running")
    for record in records:
        problem: Optional[str] = None
        try:
            client, connect_s = open_client(record.channel, token=None, timeout=timeout)
        except CliError as exc:
            problem = exc.message
        else:
            try:
                round_trip = client.ping()
            except IpcChannelError as exc:
                problem = f"ping failed: {exc}"
            finally:
                client.close()
        if problem is not None:
            report.line(_FAIL, "  host", f"{record.describe()}: unreachable: {problem}")
        else:
            report.line(
                _OK,
                "  host",
                f"{record.describe()}: ping {round_trip * 1000.0:.3f} ms "
                f"(connect {connect_s * 1000.0:.3f} ms)",
            )
