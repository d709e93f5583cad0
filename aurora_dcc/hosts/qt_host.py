"""``QtHost``: an aurora_dcc server inside a running Qt application.

Every Qt-based DCC (Maya, Houdini, Nuke, 3ds Max) hosts aurora_dcc the same
way: a ``QtLocalSocketServer`` on the application's event loop (so request
handlers run on the main thread, where DCC APIs may be called), an
``RpcServer`` serving one handler registry to every client, and a
``DccIpcChannel`` for work that arrives on other threads (subprocess plugins,
workers). The host closes itself when the application quits.

Usage (in Maya's ``userSetup.py`` or a shelf button)::

    from aurora_dcc.hosts.qt_host import start_host
    host = start_host(peer_name="maya-2025")    # idempotent: one host per process

    @host.handler("scene.info")
    def scene_info():
        return {"nodes": len(cmds.ls())}         # runs on Maya's main thread

    host.emit("selection.changed", {"nodes": cmds.ls(selection=True)})

External tools then connect to ``host.name`` (also put in
``AURORAVIEW_IPC_CHANNEL`` for processes the DCC starts). Code in the DCC's
own process gets an in-process channel to the host from
``create_for_context()`` (``host.in_process``: no socket, handlers on the
main thread). ``start_host()`` again with other settings raises
``HostSettingsError``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional, TypeVar, Union

from ..main_thread.channel import DccIpcChannel
from ..main_thread.in_process import InProcessServer
from ..process.backend import BackendHandle, Command, backend_mode, spawn_backend
from ..process.discovery import publish_running_host
from ..process.environment import ENV_CHANNEL, ENV_TOKEN, IpcMode
from ..process.factory import register_process_host, unregister_process_host
from ..qt.compat import app_instance
from ..qt.local_socket import QtLocalSocketServer
from ..rpc.registry import F, HandlerRegistry
from ..rpc.server import RpcServer
from .host_settings import refuse_other_settings, started_with

__all__ = ["QtHost", "current_host", "start_host", "stop_host"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class QtHost:
    """Server, RPC and main-thread channel of one Qt application (see module docstring).

    ``name`` defaults to ``auroraview_<pid>``. With a ``token``, clients must
    present it in ``hello``; it is exported with the name to child processes.
    ``registry`` is the :class:`HandlerRegistry` to serve (a new one if None).
    Requires a ``QCoreApplication`` (or ``QApplication``) to exist.

    Usage::

        with QtHost("aurora_tools", token=token, peer_name="nuke-15") as host:
            host.register("scene.info", lambda: {"nodes": len(nuke.allNodes())})
            app.exec()
    """

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        token: Optional[str] = None,
        peer_name: Optional[str] = None,
        registry: Optional[HandlerRegistry] = None,
        export_env: bool = True,
    ) -> None:
        app = app_instance()
        if app is None:
            raise RuntimeError("QtHost needs a running QCoreApplication/QApplication; none exists")
        self.name = name or f"auroraview_{os.getpid()}"
        self.token = token
        self.peer_name = peer_name or f"qt-host-{os.getpid()}"
        self.server = QtLocalSocketServer(self.name, token=token, peer_name=self.peer_name)
        self.rpc = RpcServer(self.server, registry, name=self.peer_name)
        self.main = DccIpcChannel(f"{self.name}.main")
        # Clients in this process (create_for_context()) reach the same registry, no socket.
        self.in_process = InProcessServer(self.name, self.main, peer_name=self.peer_name)
        self.in_process_rpc = RpcServer(self.in_process, self.rpc.registry, name=self.peer_name)
        register_process_host(self.in_process)
        self._backends: list[BackendHandle] = []
        self._close_callbacks: list[Callable[[], None]] = []
        self._closed = False
        app.aboutToQuit.connect(self.close)
        if export_env:
            os.environ[ENV_CHANNEL] = self.name
            if token is not None:
                os.environ[ENV_TOKEN] = token
        log.info("aurora_dcc host %r listening at %s", self.peer_name, self.server.address)
        # Listed for `aurora-dcc hosts` and connect("maya"); the default name says no DCC.
        self.published = publish_running_host(
            self.name,
            self.server.address,
            peer_name=self.peer_name,
            token=token,
            dcc=None if peer_name else "qt",
        )

    @property
    def registry(self) -> HandlerRegistry:
        return self.rpc.registry

    def handler(self, name: Optional[str] = None) -> Callable[[F], F]:
        """Decorator: serve a request handler (it runs on the main thread)."""
        return self.rpc.handler(name)

    def register(self, name: str, fn: F) -> F:
        return self.rpc.register(name, fn)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client (in this process too)."""
        self.rpc.emit(event, data)
        self.in_process.emit(event, data)

    def on(self, pattern: str, handler: Callable[[str, Any], None]) -> None:
        """Subscribe to events from every client (``*`` wildcards)."""
        self.rpc.on(pattern, handler)
        self.in_process_rpc.on(pattern, handler)

    def call_in_main_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = 30.0, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the main thread and return its result (any thread).

        Runs inline on the main thread. See ``DccIpcChannel.call_in_main_thread``.
        """
        return self.main.call_in_main_thread(fn, *args, timeout=timeout, **kwargs)

    def spawn_backend(
        self, command: Command, *, mode: Union[IpcMode, str, None] = None, **options: Any
    ) -> BackendHandle:
        """Start a packed-mode backend that joins this host's server.

        In legacy mode the backend talks over its own pipes instead. Backends
        are stopped when the host closes.
        """
        mode = backend_mode(mode)
        if mode is IpcMode.LEGACY:
            backend = spawn_backend(command, mode=mode, registry=self.registry, **options)
        else:
            backend = spawn_backend(
                command, mode=mode, server=self.rpc, token=self.token, **options
            )
        self._backends.append(backend)
        return backend

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the host closes, before its clients go (to unhook callbacks)."""
        self._close_callbacks.append(callback)

    def close(self) -> None:
        """Stop backends, close every client and the server. Idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        if self.published is not None:
            self.published.remove()
        for callback in self._close_callbacks:
            try:
                callback()
            except Exception:
                log.exception("close callback %r failed", callback)
        for backend in self._backends:
            try:
                backend.stop()
            except Exception:
                log.exception("stopping backend %r failed", backend)
        unregister_process_host(self.in_process)
        self.in_process_rpc.close()
        self.rpc.close()
        self.main.shutdown()
        global _host
        if _host is self:
            _host = None

    def __enter__(self) -> QtHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_host: Optional[QtHost] = None
_host_settings: dict[str, Any] = {}  # what _host runs with (see host_settings)


def start_host(name: Optional[str] = None, **options: Any) -> QtHost:
    """The process's host, started on first call; later calls return the same one.

    A later call asking for other settings (``name``, ``token``, any option)
    than the running host's raises ``HostSettingsError`` naming them; settings
    left out match. ``stop_host()`` first to start another.
    """
    global _host, _host_settings
    if _host is not None:
        refuse_other_settings(_host, _host_settings, name, options)
        return _host
    host = QtHost(name, **options)
    _host, _host_settings = host, started_with(QtHost, host, options)
    return host


def current_host() -> Optional[QtHost]:
    """The running host, or None."""
    return _host


def stop_host() -> None:
    """Close the process's host, if one runs."""
    if _host is not None:
        _host.close()
