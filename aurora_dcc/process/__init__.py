"""Processes: choosing a transport, packed backends and subprocess plugins.

- :mod:`.environment`: the ``AURORAVIEW_*`` variables a host gives its child,
  and ``IpcMode`` (the transports by name).
- :mod:`.factory`: ``create_for_context()``, the right channel for where the
  code runs, and ``IpcChannelFactory``.
- :mod:`.backend`: host side of packed mode: ``spawn_backend`` and
  ``BackendHandle``; :mod:`.backend_peer`: backend side, ``connect_backend``.
- :mod:`.child_io`: a child process with its stderr passed through.
- :mod:`.plugin`: ``ProcessPlugin`` (a job in a child process, with progress
  and cancel) and ``plugin_context`` (the child's side).
- :mod:`.discovery`: each running host's record (``publish_host``,
  ``list_hosts``); :mod:`.host_client`: ``connect()`` to a host found by DCC,
  pid or channel.
"""

from __future__ import annotations

from .backend import BackendHandle, spawn_backend
from .backend_peer import BackendError, BackendPeer, connect_backend
from .discovery import HostRecord, list_hosts
from .environment import IpcMode
from .factory import IpcChannelFactory, create_for_context
from .host_client import AmbiguousHost, HostClient, HostNotFound, connect
from .plugin import ProcessPlugin, plugin_context

__all__ = [
    "AmbiguousHost",
    "BackendError",
    "BackendHandle",
    "BackendPeer",
    "HostClient",
    "HostNotFound",
    "HostRecord",
    "IpcChannelFactory",
    "IpcMode",
    "ProcessPlugin",
    "connect",
    "connect_backend",
    "create_for_context",
    "list_hosts",
    "plugin_context",
    "spawn_backend",
]
