"""The environment variables that carry a channel to a child process, and :class:`IpcMode`.

A host that starts a packed backend or a subprocess plugin sets these; the
child's ``create_for_context()``/``connect_backend()`` reads them.

Usage::

    env = {**os.environ, ENV_CHANNEL: server.name, ENV_TOKEN: token}
    subprocess.Popen([sys.executable, "backend.py"], env=env)
"""

from __future__ import annotations

import enum

from ..errors import IpcChannelError

__all__ = ["ENV_CHANNEL", "ENV_MODE", "ENV_PACKED", "ENV_TOKEN", "IpcMode"]

ENV_CHANNEL = "AURORAVIEW_IPC_CHANNEL"
"""Name of the channel a child process should join."""
ENV_TOKEN = "AURORAVIEW_IPC_TOKEN"
"""Session token the server requires, if any."""
ENV_PACKED = "AURORAVIEW_PACKED"
"""``1`` in a packed-mode backend started by its host."""
ENV_MODE = "AURORAVIEW_IPC_MODE"
"""Forces a transport: an :class:`IpcMode` value, ``thread``, ``local_socket`` or ``legacy``."""


class IpcMode(str, enum.Enum):
    """A transport, by the name ``AURORAVIEW_IPC_MODE`` uses.

    ``THREAD``: in-process queue. ``LOCAL_SOCKET``: Unix socket / named pipe
    (docs/PROTOCOL.md). ``LEGACY``: NDJSON over a child's stdin/stdout.

    Usage::

        IpcMode.parse("local-socket")          # IpcMode.LOCAL_SOCKET
        IpcMode.LEGACY.value                   # 'legacy', as in AURORAVIEW_IPC_MODE
    """

    THREAD = "thread"
    LOCAL_SOCKET = "local_socket"
    LEGACY = "legacy"

    @classmethod
    def parse(cls, value: str) -> IpcMode:
        """``value`` as a mode (any case, ``-`` or ``_``); ``IpcChannelError`` if unknown."""
        key = value.strip().lower().replace("-", "_")
        for mode in cls:
            if mode.value == key:
                return mode
        known = ", ".join(mode.value for mode in cls)
        raise IpcChannelError(f"unknown IPC mode {value!r} (in {ENV_MODE}?); known: {known}")
