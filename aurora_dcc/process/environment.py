"""The environment variables that carry a channel to a child process.

A host that starts a packed backend or a subprocess plugin sets these; the
child's ``create_for_context()``/``connect_backend()`` reads them.

Usage::

    env = {**os.environ, ENV_CHANNEL: server.name, ENV_TOKEN: token}
    subprocess.Popen([sys.executable, "backend.py"], env=env)
"""

from __future__ import annotations

__all__ = ["ENV_CHANNEL", "ENV_MODE", "ENV_PACKED", "ENV_TOKEN"]

ENV_CHANNEL = "AURORAVIEW_IPC_CHANNEL"
"""Name of the channel a child process should join."""
ENV_TOKEN = "AURORAVIEW_IPC_TOKEN"
"""Session token the server requires, if any."""
ENV_PACKED = "AURORAVIEW_PACKED"
"""``1`` in a packed-mode backend started by its host."""
ENV_MODE = "AURORAVIEW_IPC_MODE"
"""Forces a transport: ``thread``, ``local_socket``, ``shared_memory`` or ``legacy``."""
