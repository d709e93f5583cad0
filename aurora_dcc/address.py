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
import sys

__all__ = ["MAX_UNIX_PATH", "is_windows", "resolve_address", "temp_dir"]

MAX_UNIX_PATH = 104 if sys.platform == "darwin" else 108
"""Bytes in ``sockaddr_un.sun_path`` (including the terminating NUL)."""

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
