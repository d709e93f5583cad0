"""Channel names to socket addresses, the way ``QLocalServer.listen(name)`` does it.

Both the Qt side and the pure-Python side call :func:`resolve_address`, so a
Qt server and a plain client (or the reverse) always meet at the same place.

Usage::

    resolve_address("auroraview_4711")   # '/tmp/auroraview_4711' on Linux
    resolve_address("/run/me/sock")      # absolute paths are used as given
    # Windows: '\\\\.\\pipe\\auroraview_4711'
"""

from __future__ import annotations

import os
import socket
import stat
import sys

from ..errors import IpcChannelError

__all__ = [
    "MAX_UNIX_PATH",
    "AddressInUse",
    "claim_address",
    "is_windows",
    "resolve_address",
    "temp_dir",
]

MAX_UNIX_PATH = 104 if sys.platform == "darwin" else 108
"""Bytes in ``sockaddr_un.sun_path`` (including the terminating NUL)."""


class AddressInUse(IpcChannelError, OSError):
    """Another live server already listens on this channel name."""


_PIPE_PREFIX = "\\\\.\\pipe\\"


def is_windows() -> bool:
    return os.name == "nt"


def temp_dir() -> str:
    """``QDir::tempPath()`` on Unix: ``$TMPDIR`` if set, else ``/tmp``, cleaned."""
    return os.path.normpath(os.environ.get("TMPDIR") or "/tmp")


def resolve_address(name: str) -> str:
    """The socket path (Unix) or pipe name (Windows) of channel ``name``."""
    if not name:
        raise ValueError("a channel name must not be empty")
    if is_windows():
        return name if name.startswith(_PIPE_PREFIX) else _PIPE_PREFIX + name
    path = name if os.path.isabs(name) else os.path.join(temp_dir(), name)
    if len(os.fsencode(path)) >= MAX_UNIX_PATH:
        raise ValueError(
            f"socket path {path!r} is longer than the {MAX_UNIX_PATH - 1} bytes a Unix socket "
            "allows; use a shorter channel name or TMPDIR"
        )
    return path


def claim_address(name: str) -> str:
    """Make channel ``name``'s address free for a new server; return the address.

    A socket file left by a crashed server (nobody accepts on it) is removed;
    a live server's socket is never touched: that raises ``AddressInUse``.
    Named pipes on Windows vanish with their server, so there is nothing to do.
    """
    address = resolve_address(name)
    if is_windows() or not os.path.exists(address):
        return address
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(address)
    except OSError as exc:
        # Refused (or not a socket at all): a stale file; take it over.
        if stat.S_ISSOCK(os.lstat(address).st_mode):
            os.unlink(address)
            return address
        raise AddressInUse(
            f"{address!r} exists and is not a socket; refusing to remove it"
        ) from exc
    finally:
        probe.close()
    raise AddressInUse(
        f"channel {name!r} is already served by a live server at {address!r}; "
        "pick another name or stop that server first"
    )
