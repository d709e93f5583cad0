"""aurora_dcc: one fast, safe IPC layer for DCC applications and the tools around them.

Usage::

    from aurora_dcc import ThreadChannel, IpcMessage
    a, b = ThreadChannel.pair("demo")
    a.emit("hello", {"from": "a"})
    b.receive(timeout=1.0).data        # {'from': 'a'}

The names below are the public API: stable within a major version (a change
to one is a breaking change, noted in the changelog). Everything else is
importable from its subpackage (``aurora_dcc.channel``, ``.rpc``,
``.process``, ``.errors``, ...) and may change between minor versions.

Messages
    ``IpcMessage``, ``IpcMessageType``: the protocol's messages.
    ``PROTOCOL_VERSION``: the wire protocol this package speaks (docs/PROTOCOL.md).
Buffers (docs/buffers.md)
    ``BufferSettings``, ``configure_buffers(**fields)``: how buffers travel (the
    shared-memory threshold, zero copy, numpy arrays); ``release_buffers(value)``:
    give back the zero-copy views in a received value.
Channels
    ``IpcChannel``: the interface of every channel (send, receive, ``on_message``).
    ``ThreadChannel``: an in-process pair of channels.
    ``LocalSocketChannel``, ``LocalSocketChannelServer``: a client and a
    server over a Unix socket / Windows named pipe, in pure Python.
    ``create_for_context()``: the right channel for where the code runs.
    ``call_in_main_thread(fn, *args, **kwargs)``: run ``fn`` on the Qt main thread.
RPC
    ``Peer``: requests, responses and events over any channel.
    ``HandlerRegistry``: request handlers by name (shared by peers and servers).
    ``RpcServer``: one registry served to every client of a server.
    ``PluginRouter``: plugins' methods served as ``plugin:method``.
    ``IpcCallError``: what a failed request raises (``code``, ``message``, ``data``).
Processes
    ``spawn_backend()`` / ``connect_backend()``: a host and its packed Python
    backend (each side). ``plugin_context()``: a subprocess plugin's side.
Finding hosts
    ``connect(target=None)``: a ready client (a ``Peer``, a context manager)
    of a running host, named by DCC (``"maya"``), pid or channel, or the one
    host running; its token is read from the host's private token file. An
    explicit target wins, then ``AURORAVIEW_IPC_CHANNEL``, then discovery
    (docs/cli.md). ``aurora-dcc hosts`` lists the running hosts.
Errors
    ``ErrorCode``: the protocol's error codes. ``IpcChannelError``: base of
    every exception a channel raises; ``ChannelTimeout`` (also a
    ``TimeoutError``), ``Disconnected`` (also a ``ConnectionError``) and
    ``ShuttingDown`` are the ones a caller usually tells apart.

Importing the package imports no Qt: the Qt side (``aurora_dcc.qt``,
``aurora_dcc.hosts``) is imported where it is used, through qtpy, so a
backend or a tool without Qt installed uses everything else.
"""

from __future__ import annotations

from .channel.base import IpcChannel
from .channel.thread import ThreadChannel
from .errors import ChannelTimeout, Disconnected, ErrorCode, IpcChannelError, ShuttingDown
from .main_thread.channel import call_in_main_thread
from .process.backend import spawn_backend
from .process.backend_peer import connect_backend
from .process.factory import create_for_context
from .process.host_client import connect
from .process.plugin import plugin_context
from .protocol.buffer_values import release_buffers
from .protocol.buffers import BufferSettings, configure_buffers
from .protocol.handshake import PROTOCOL_VERSION
from .protocol.message import IpcMessage, IpcMessageType
from .rpc.call_error import IpcCallError
from .rpc.peer import Peer
from .rpc.registry import HandlerRegistry
from .rpc.router import PluginRouter
from .rpc.server import RpcServer
from .transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "BufferSettings",
    "ChannelTimeout",
    "Disconnected",
    "ErrorCode",
    "HandlerRegistry",
    "IpcCallError",
    "IpcChannel",
    "IpcChannelError",
    "IpcMessage",
    "IpcMessageType",
    "LocalSocketChannel",
    "LocalSocketChannelServer",
    "Peer",
    "PluginRouter",
    "RpcServer",
    "ShuttingDown",
    "ThreadChannel",
    "__version__",
    "call_in_main_thread",
    "configure_buffers",
    "connect",
    "connect_backend",
    "create_for_context",
    "plugin_context",
    "release_buffers",
    "spawn_backend",
]
