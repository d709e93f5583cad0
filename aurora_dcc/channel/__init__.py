"""Channels: the one interface every transport implements, and the in-process one.

- :mod:`.base`: ``IpcChannel`` (send, receive, ``on_message`` handlers,
  ``wait_event``, shutdown), the interface ``Peer`` and the hosts speak.
- :mod:`.server`: ``IpcServer``, the interface of a server of channels.
- :mod:`.thread`: ``ThreadChannel``, two ends of a bounded in-process queue.
- :mod:`.shutdown`: ``ShutdownState``, in-flight operations, drain and shutdown
  (shared by the ends of a pair, or a connection and its ``Peer``).
- :mod:`.metrics`: ``IpcChannelMetrics`` counters and ``MetricsSnapshot``.
- :mod:`.waker`: ``Waker``, how a channel asks a host's main thread to run it.

Transports (sockets, pipes, Qt) live above, in :mod:`aurora_dcc.transport`
and :mod:`aurora_dcc.qt`.
"""

from __future__ import annotations

from .base import IpcChannel, MessageHandler
from .metrics import IpcChannelMetrics, MetricsSnapshot
from .server import IpcServer
from .shutdown import ShutdownState
from .thread import ThreadChannel

__all__ = [
    "IpcChannel",
    "IpcChannelMetrics",
    "IpcServer",
    "MessageHandler",
    "MetricsSnapshot",
    "ShutdownState",
    "ThreadChannel",
]
