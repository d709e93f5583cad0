"""``aurora-dcc serve``: a standalone host that stays up until Ctrl-C or SIGTERM.

It runs :class:`~aurora_dcc.hosts.standalone.StandaloneHost` (a Qt event
loop of its own and a small in-memory scene) and publishes its discovery
record, so ``aurora-dcc hosts`` lists it and ``aurora-dcc call scene.info``
finds it with no channel typed. By default it requires a fresh random token,
kept in the 0600 token file beside its record (clients read it from there).

Usage::

    code = serve(name=None, token=True)     # blocks until Ctrl-C / SIGTERM; 0
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import sys
from typing import Any, Optional

from .exit_codes import CliError, ExitCode

__all__ = ["serve"]


def _load_host_class() -> Any:
    try:
        from ..hosts.standalone import StandaloneHost
    except Exception as exc:  # qtpy raises its own error types when no binding is found
        raise CliError(
            ExitCode.CALL_FAILED,
            f"serve needs a Qt binding (PySide6 or PySide2) through qtpy: {exc}; "
            "e.g. pip install PySide6-Essentials",
        ) from None
    return StandaloneHost


def serve(name: Optional[str], *, token: bool) -> int:
    """Run a standalone host on channel ``name`` (default ``auroraview_<pid>``) until stopped."""
    host_class = _load_host_class()
    from ..transport.address import AddressInUse, InvalidChannelName

    secret = secrets.token_urlsafe(24) if token else None
    try:
        host = host_class(name, token=secret, export_env=False)
    except InvalidChannelName as exc:
        raise CliError(ExitCode.USAGE, str(exc)) from None
    except AddressInUse as exc:
        raise CliError(ExitCode.CALL_FAILED, str(exc)) from None
    except Exception as exc:  # a bad name, an untrusted runtime folder: one line
        raise CliError(ExitCode.CALL_FAILED, f"cannot start the host: {exc}") from None
    try:
        _announce(host)
        with _quit_on_signals(host.app):
            host.app.exec()
    finally:
        host.close()
    sys.stderr.write("aurora-dcc: host stopped\n")
    return ExitCode.OK


def _announce(host: Any) -> None:
    record = host.published.record if host.published is not None else None
    lines = [
        f"aurora-dcc: serving {host.peer_name!r} on channel {host.name} (pid {record.pid})"
        if record is not None
        else f"aurora-dcc: serving {host.peer_name!r} on channel {host.name}",
        f"  socket: {host.server.address}",
    ]
    if record is None:
        lines.append("  not listed by `aurora-dcc hosts` (see the warning above)")
    elif record.token_required:
        lines.append(f"  token:  in {record.token_path} (clients read it from there)")
    lines += [
        "try, in another shell:",
        "  aurora-dcc hosts",
        "  aurora-dcc call scene.info",
        "  aurora-dcc call scene.create type=cube",
        "  aurora-dcc listen",
        "stop with Ctrl-C",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _quit_on_signals(app: Any) -> Any:
    """Quit ``app`` on SIGINT/SIGTERM, even while Qt's loop (not Python) waits.

    The signal's byte on a socket pair wakes a ``QSocketNotifier``: Python
    then runs, and with it the signal handler (a Qt loop alone would let the
    signal wait until the next Python code runs, i.e. forever when idle).
    """
    from ..qt.compat import QtCore

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    notifier = QtCore.QSocketNotifier(reader.fileno(), QtCore.QSocketNotifier.Type.Read)

    def drain() -> None:
        with contextlib.suppress(OSError):
            reader.recv(512)

    notifier.activated.connect(drain)
    stop_signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.getsignal(sig) for sig in stop_signals}
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for sig in stop_signals:
        signal.signal(sig, lambda *_: app.quit())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        notifier.setEnabled(False)
        reader.close()
        writer.close()
