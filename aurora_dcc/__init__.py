"""aurora_dcc: one fast, safe IPC layer for DCC applications and the tools around them.

Usage::

    from aurora_dcc import ThreadChannel, IpcMessage
    a, b = ThreadChannel.pair("demo")
    a.emit("hello", {"from": "a"})
    b.receive(timeout=1.0).data        # {'from': 'a'}

Importing the package imports no Qt: the Qt side (``qt_local_socket``,
``qt_waker``, ``hosts.qt_host``) is imported where it is used, through qtpy,
so a backend or a tool without Qt installed uses everything else.
"""

from __future__ import annotations

from .channel.base import IpcChannel, MessageHandler
from .channel.metrics import IpcChannelMetrics, MetricsSnapshot
from .channel.server import IpcServer
from .channel.shutdown import OperationGuard, ShutdownState
from .channel.thread import ThreadChannel
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
from .main_thread.channel import DccIpcChannel, call_in_main_thread
from .process.backend import BackendError, BackendHandle, connect_backend, spawn_backend
from .process.factory import IpcChannelFactory, IpcMode, create_for_context
from .process.plugin import ProcessPlugin, plugin_context
from .protocol.handshake import PROTOCOL_VERSION
from .protocol.message import IpcMessage, IpcMessageType, new_message_id
from .rpc.peer import HandlerRegistry, IpcCallError, Peer
from .rpc.router import PluginRouter
from .rpc.server import RpcServer
from .transport.local_socket import LocalSocketChannel, LocalSocketChannelServer, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "BackendError",
    "BackendHandle",
    "ChannelTimeout",
    "DccIpcChannel",
    "Disconnected",
    "ErrorCode",
    "HandlerRegistry",
    "IpcCallError",
    "IpcChannel",
    "IpcChannelError",
    "IpcChannelFactory",
    "IpcChannelMetrics",
    "IpcError",
    "IpcMessage",
    "IpcMessageType",
    "IpcMode",
    "IpcServer",
    "LocalSocketChannel",
    "LocalSocketChannelServer",
    "MessageHandler",
    "MessageTooLarge",
    "MetricsSnapshot",
    "OperationGuard",
    "Peer",
    "PluginRouter",
    "ProcessPlugin",
    "ReceiveFailed",
    "RetryPolicy",
    "RpcServer",
    "SendFailed",
    "SerializationError",
    "ShutdownState",
    "ShuttingDown",
    "ThreadChannel",
    "Unauthorized",
    "UnsupportedProtocol",
    "__version__",
    "call_in_main_thread",
    "connect_backend",
    "create_for_context",
    "new_message_id",
    "plugin_context",
    "spawn_backend",
]
