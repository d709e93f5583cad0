"""aurora_dcc: one fast, safe IPC layer for DCC applications and the tools around them.

Usage::

    from aurora_dcc import ThreadChannel, IpcMessage
    a, b = ThreadChannel.pair("demo")
    a.emit("hello", {"from": "a"})
    b.receive(timeout=1.0).data        # {'from': 'a'}

The core (this package's top level) never imports Qt; the Qt-side modules do,
through qtpy.
"""

from __future__ import annotations

from .channel import IpcChannel, MessageHandler
from .errors import (
    ChannelTimeout,
    Disconnected,
    ErrorCode,
    IpcChannelError,
    IpcError,
    MessageTooLarge,
    ReceiveFailed,
    SendFailed,
    SerializationError,
    ShuttingDown,
    Unauthorized,
    UnsupportedProtocol,
)
from .message import IpcMessage, IpcMessageType, new_message_id
from .metrics import IpcChannelMetrics, MetricsSnapshot
from .peer import HandlerRegistry, IpcCallError, Peer
from .router import PluginRouter
from .shutdown import OperationGuard, ShutdownState
from .thread_channel import ThreadChannel

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "ChannelTimeout",
    "Disconnected",
    "ErrorCode",
    "HandlerRegistry",
    "IpcCallError",
    "IpcChannel",
    "IpcChannelError",
    "IpcChannelMetrics",
    "IpcError",
    "IpcMessage",
    "IpcMessageType",
    "MessageHandler",
    "MessageTooLarge",
    "MetricsSnapshot",
    "OperationGuard",
    "Peer",
    "PluginRouter",
    "ReceiveFailed",
    "SendFailed",
    "SerializationError",
    "ShutdownState",
    "ShuttingDown",
    "ThreadChannel",
    "Unauthorized",
    "UnsupportedProtocol",
    "__version__",
    "new_message_id",
]
