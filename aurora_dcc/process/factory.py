"""``IpcChannelFactory``: the right channel for where the code runs, in one line.

Usage::

    channel = create_for_context()          # packed backend, DCC or plain script
    channel = IpcChannelFactory.create(IpcMode.LOCAL_SOCKET, "auroraview_4711", token=token)
    server = IpcChannelFactory.create_server(IpcMode.LOCAL_SOCKET, "auroraview_4711")
    mode = auto_detect()                    # IpcMode.LOCAL_SOCKET inside a packed backend
    register_process_host(server)           # a host starting (InProcessServer); see below

Inside a process that hosts (a DCC after ``start_host()``, Blender after
``start()``, a ``StandaloneHost``), ``create_for_context()`` returns an
``InProcessChannel`` to that host (:mod:`aurora_dcc.main_thread.in_process`):
its requests run the host's handlers on the main thread, without a socket.
Hosts say they run with :func:`register_process_host` when they start and
:func:`unregister_process_host` when they close; this module imports no host.

The environment a host gives its child (see docs/PROTOCOL.md and
:mod:`aurora_dcc.process.backend`): ``AURORAVIEW_IPC_CHANNEL`` (channel name),
``AURORAVIEW_IPC_TOKEN`` (session token), ``AURORAVIEW_PACKED=1`` (this is a
packed backend) and ``AURORAVIEW_IPC_MODE`` (forces a transport: ``thread``,
``local_socket`` or ``legacy``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Optional

from ..channel.base import IpcChannel
from ..channel.server import IpcServer
from ..channel.thread import ThreadChannel
from ..errors import IpcChannelError
from ..main_thread.in_process import InProcessServer
from ..transport.local_socket import LocalSocketChannel, LocalSocketChannelServer, RetryPolicy
from .environment import ENV_CHANNEL, ENV_MODE, ENV_PACKED, ENV_TOKEN, IpcMode

__all__ = [
    "IpcChannelFactory",
    "IpcMode",
    "auto_detect",
    "create_for_context",
    "is_packed",
    "process_host",
    "qt_app_exists",
    "register_process_host",
    "unregister_process_host",
]

DEFAULT_NAME = "aurora"
CONNECT_RETRY = RetryPolicy(attempts=8, initial_delay=0.05, max_delay=0.5)
"""A child may start before its host listens; this covers a couple of seconds."""


_process_hosts: list[InProcessServer] = []  # the running hosts of this process, newest last
_process_hosts_lock = threading.Lock()


def register_process_host(server: InProcessServer) -> None:
    """A host of this process starts: ``create_for_context()`` connects to ``server`` from now on.

    With several hosts, the newest that is still open is used.
    """
    with _process_hosts_lock:
        _process_hosts.append(server)


def unregister_process_host(server: InProcessServer) -> None:
    """The host of ``server`` closes (idempotent)."""
    with _process_hosts_lock:
        if server in _process_hosts:
            _process_hosts.remove(server)


def process_host() -> Optional[InProcessServer]:
    """The in-process server of the newest host running in this process, or None."""
    with _process_hosts_lock:
        return _process_hosts[-1] if _process_hosts else None


def _environ(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def is_packed(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True in a packed backend: ``AURORAVIEW_PACKED`` is ``1`` (or ``true``/``yes``)."""
    return _environ(environ).get(ENV_PACKED, "").strip().lower() in ("1", "true", "yes")


def auto_detect(environ: Optional[Mapping[str, str]] = None) -> IpcMode:
    """The transport the environment asks for.

    ``AURORAVIEW_IPC_MODE`` if set; else ``LOCAL_SOCKET`` when
    ``AURORAVIEW_IPC_CHANNEL`` names a channel to join (or ``AURORAVIEW_PACKED``
    is set); else ``THREAD``.
    """
    env = _environ(environ)
    forced = env.get(ENV_MODE, "").strip()
    if forced:
        return IpcMode.parse(forced)
    if env.get(ENV_CHANNEL) or is_packed(env):
        return IpcMode.LOCAL_SOCKET
    return IpcMode.THREAD


class IpcChannelFactory:
    """Creates channels and servers by :class:`IpcMode`.

    Usage::

        client = IpcChannelFactory.create("local_socket", "auroraview_4711", token=token)
        loop = IpcChannelFactory.create(IpcMode.THREAD, "jobs")
        server = IpcChannelFactory.create_server(IpcMode.LOCAL_SOCKET, "auroraview_4711")
    """

    @staticmethod
    def create(
        mode: Any,
        name: str = DEFAULT_NAME,
        *,
        token: Optional[str] = None,
        timeout: float = 10.0,
        **options: Any,
    ) -> IpcChannel:
        """A channel of ``mode`` (an :class:`IpcMode` or its name).

        ``THREAD``: a ``ThreadChannel`` named ``name``. ``LOCAL_SOCKET``: a client
        connected to the server of ``name`` with ``token`` (retrying for a couple
        of seconds while it starts). ``LEGACY``: this process's own stdin/stdout
        (only in a child its host started in legacy mode). ``options`` go to the
        channel's constructor or ``connect``. Raises ``IpcChannelError`` for an
        unknown mode, and the transport's errors.
        """
        mode = mode if isinstance(mode, IpcMode) else IpcMode.parse(str(mode))
        if mode is IpcMode.THREAD:
            return ThreadChannel(name, **options)
        if mode is IpcMode.LOCAL_SOCKET:
            options.setdefault("retry", CONNECT_RETRY)
            return LocalSocketChannel.connect(name, token=token, timeout=timeout, **options)
        from ..transport.stdio import StdioChannel  # LEGACY: only a child needs it

        return StdioChannel.connect_stdio(name, timeout=timeout, **options)

    @staticmethod
    def create_server(
        mode: Any, name: str, *, token: Optional[str] = None, **options: Any
    ) -> IpcServer:
        """A server of ``mode`` listening on ``name``: ``LOCAL_SOCKET`` only (pure Python)."""
        mode = mode if isinstance(mode, IpcMode) else IpcMode.parse(str(mode))
        if mode is IpcMode.LOCAL_SOCKET:
            return LocalSocketChannelServer(name, token=token, **options)
        raise IpcChannelError(
            f"{mode.value} has no server: a ThreadChannel is in-process, and a legacy "
            "channel is made per child by spawn_backend"
        )


def create_for_context(
    name: str = DEFAULT_NAME,
    *,
    environ: Optional[Mapping[str, str]] = None,
    timeout: float = 10.0,
) -> IpcChannel:
    """The channel that fits where this code runs. First match wins:

    ====================================================  =====================================
    context                                               channel
    ====================================================  =====================================
    this process hosts (``start_host()``, a Blender       ``InProcessChannel`` to that host: its
    host, a ``StandaloneHost``), unless                   requests run the host's handlers on
    ``AURORAVIEW_IPC_CHANNEL`` names another host         the main thread, never a socket
    packed backend, ``AURORAVIEW_IPC_MODE=legacy``        ``StdioChannel`` over stdin/stdout
    ``AURORAVIEW_IPC_CHANNEL`` set (a packed backend,     ``LocalSocketChannel`` connected to it,
    a subprocess plugin, a tool told where to connect)    with ``AURORAVIEW_IPC_TOKEN``
    ``AURORAVIEW_IPC_MODE`` set to another mode           that mode, named ``name``
    a ``QCoreApplication`` exists (a DCC, a Qt tool)      ``DccIpcChannel(name)``: handlers run
                                                          on the main thread
    a plain script                                        ``ThreadChannel(name)``
    ====================================================  =====================================

    ``environ`` defaults to ``os.environ``. Connecting waits up to ``timeout``
    seconds and raises ``Disconnected``/``Unauthorized``/``ChannelTimeout``.

    Usage::

        channel = create_for_context()
        peer = Peer(channel)
    """
    env = _environ(environ)
    host = process_host()
    if host is not None and env.get(ENV_CHANNEL, host.name) == host.name:
        return host.connect(name)  # never a socket to our own main thread (it would wait for us)
    mode = auto_detect(env)
    if mode is IpcMode.LEGACY:
        return IpcChannelFactory.create(mode, name, timeout=timeout)
    joined = env.get(ENV_CHANNEL)
    if joined and mode is IpcMode.LOCAL_SOCKET:
        return IpcChannelFactory.create(mode, joined, token=env.get(ENV_TOKEN), timeout=timeout)
    if is_packed(env):
        raise IpcChannelError(
            f"{ENV_PACKED} is set but {ENV_CHANNEL} is not: this backend was not started "
            "by a host (spawn_backend) that gave it a channel"
        )
    if env.get(ENV_MODE, "").strip():
        return IpcChannelFactory.create(mode, name, timeout=timeout)
    if qt_app_exists():
        from ..main_thread.channel import DccIpcChannel

        return DccIpcChannel(name)
    return ThreadChannel(name)


def qt_app_exists() -> bool:
    """True if a ``QCoreApplication`` exists; never the first to import Qt."""
    if not any(binding in sys.modules for binding in ("PySide6", "PySide2", "PyQt5", "PyQt6")):
        return False
    try:
        from ..qt.compat import app_instance
    except ImportError:
        return False
    return app_instance() is not None
