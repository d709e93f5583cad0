"""Packed mode: a host runs a Python backend as a child process and talks RPC to it.

Host side, :func:`spawn_backend`: listens on a fresh channel with a fresh
token, starts the child with ``AURORAVIEW_IPC_CHANNEL``/``AURORAVIEW_IPC_TOKEN``/
``AURORAVIEW_PACKED=1`` in its environment (stdin ``/dev/null``, stdout passed
through, stderr passed through *and* its tail kept for error messages), waits
for the backend's ``ready`` and returns a :class:`BackendHandle`. A backend
that exits early, dies or never connects raises :class:`BackendError` with its
exit code and the tail of its stderr; a request in flight when it dies fails
with -32002. When the host exits, the backend exits too (its connection
closes; on Linux the kernel also signals it, ``PR_SET_PDEATHSIG``).

Backend side, :func:`connect_backend` (in :mod:`.backend_peer`, re-exported
here): reads that environment and returns a :class:`BackendPeer` (a
:class:`Peer`); ``serve_forever()`` announces the handlers and returns when
the host disconnects. ``print()`` is fine anywhere.

``AURORAVIEW_IPC_MODE=legacy`` (or ``mode="legacy"``) switches both sides to
NDJSON over the child's stdin/stdout (:mod:`aurora_dcc.transport.stdio`), same
API; there the backend's stdout is redirected to its stderr, so ``print()``
still works and shows up on the host's stderr.

Usage (host)::

    with spawn_backend(["python", "backend.py"], ready_timeout=10) as backend:
        backend.handler_names                    # ['add', ...] from its ready
        backend.on("progress", lambda event, data: log.info("%s", data))
        backend.request("add", {"a": 1, "b": 2}) # 3

The backend's side of this example (``backend.py``) is in :mod:`.backend_peer`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

from ..errors import ChannelTimeout, ErrorCode, IpcChannelError
from ..protocol.message import IpcMessage, IpcMessageType
from ..rpc.peer import DEFAULT_TIMEOUT, EventHandler, IpcCallError, Peer
from ..rpc.registry import HandlerRegistry
from ..rpc.server import RpcServer
from ..transport.local_socket import LocalSocketChannelServer
from ..transport.stdio import StdioChannel
from .backend_peer import READY_TIMEOUT, BackendError, BackendPeer, connect_backend, wait_closed
from .child_io import ChildProcess
from .environment import ENV_CHANNEL, ENV_MODE, ENV_PACKED, ENV_TOKEN, IpcMode
from .factory import qt_app_exists

__all__ = [
    "BackendError",
    "BackendHandle",
    "BackendPeer",
    "backend_mode",
    "connect_backend",
    "spawn_backend",
    "wait_closed",
]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0

Command = Union[str, Sequence[str]]

_live: set[BackendHandle] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        handles = list(_live)
    for handle in handles:
        handle.stop(timeout=1.0)


class BackendHandle:
    """A running backend (from :func:`spawn_backend`): call it, hear its events, stop it.

    ``request``/``request_async``/``emit``/``on`` work like :class:`Peer`'s;
    a request in flight when the backend dies fails with
    :class:`IpcCallError` -32002 whose ``data`` holds ``returncode`` and
    ``stderr_tail``. ``registry`` serves the host-side handlers the backend may call.

    Usage::

        backend = spawn_backend(["python", "backend.py"])
        backend.request("add", {"a": 1, "b": 2})
        backend.stop()                 # closes the connection, then waits, then terminates
    """

    def __init__(
        self,
        argv: list[str],
        *,
        mode: IpcMode,
        name: str,
        registry: HandlerRegistry,
        peer_options: Mapping[str, Any],
    ) -> None:
        """The handle's state, nothing started: :meth:`spawn` makes and starts one."""
        self.argv = argv
        self.mode = mode
        self.name = name
        self.registry = registry
        self.child: ChildProcess  # set by _launch
        self._watcher: threading.Thread  # set by _watch_process
        self._peer_options = dict(peer_options)  # name, timeout, executor of each Peer
        self._lock = threading.Lock()
        self._changed = threading.Event()  # connected, ready or exited: wait_ready re-checks
        self._exited = threading.Event()
        self._peer: Optional[Peer] = None
        self._subscriptions: list[tuple[str, EventHandler]] = []
        self._rpc: Optional[RpcServer] = None
        self._owns_rpc = False
        self._stop_listening: Callable[[], None] = _nothing
        self._pid: Optional[int] = None  # set once started: a shared server's peers match it

    @classmethod
    def spawn(
        cls,
        argv: list[str],
        *,
        mode: IpcMode,
        name: str,
        registry: HandlerRegistry,
        server: Optional[RpcServer],
        token: Optional[str],
        env: Mapping[str, str],
        cwd: Optional[str],
        peer_options: Mapping[str, Any],
        kill_with_host: bool,
    ) -> BackendHandle:
        """Start ``argv`` as a backend; returns once it runs (call ``wait_ready()`` next).

        Over a local socket the backend joins ``server`` (the host's) or a new
        server listening on ``name`` with ``token``; in legacy mode it talks
        over its pipes. Raises :class:`BackendError` when it cannot start.
        """
        handle = cls(argv, mode=mode, name=name, registry=registry, peer_options=peer_options)
        child_env = _child_environment(env, mode)
        if mode is IpcMode.LOCAL_SOCKET:
            handle._listen(server, token)
            child_env[ENV_CHANNEL] = name
            if token is not None:
                child_env[ENV_TOKEN] = token
        handle._launch(child_env, cwd, kill_with_host)
        if mode is IpcMode.LEGACY:
            handle._talk_over_pipes()
        elif server is not None:  # it may have connected before its pid was known
            for peer in server.peers:
                handle._on_peer(peer)
        handle._watch_process()
        return handle

    def _listen(self, server: Optional[RpcServer], token: Optional[str]) -> None:
        """Serve the backend's connection: on ``server``, or on a server of our own."""
        if server is None:
            own = LocalSocketChannelServer(
                self.name, token=token, peer_name=self._peer_options.get("name")
            )
            server = RpcServer(own, self.registry, **self._peer_options)
            self._owns_rpc = True
        self._rpc = server
        self._stop_listening = server.on_peer(self._on_peer)

    def _launch(self, child_env: dict[str, str], cwd: Optional[str], kill_with_host: bool) -> None:
        """Start the process (over pipes in legacy mode), its stderr passed through."""
        legacy = self.mode is IpcMode.LEGACY
        try:
            self.child = ChildProcess(
                self.argv, env=child_env, cwd=cwd, pipes=legacy, kill_with_host=kill_with_host
            )
        except OSError as exc:
            self._release()
            raise BackendError(f"cannot start backend {self.argv[0]!r}: {exc}") from exc
        self._pid = self.child.pid

    def _talk_over_pipes(self) -> None:
        """Legacy mode: the backend's stdin/stdout are the channel."""
        channel = StdioChannel.serve_process(
            self.child.popen,
            self.name,
            list_handler_names=self.registry.names,
            peer_name=self._peer_options.get("name"),
        )
        self._attach(Peer(channel, self.registry, session_started=True, **self._peer_options))

    def _watch_process(self) -> None:
        """Stop it at our exit, and notice when it exits (``_watch``, on a thread)."""
        with _live_lock:
            _live.add(self)
        self._watcher = threading.Thread(
            target=self._watch, name=f"aurora-backend-{self.child.pid}", daemon=True
        )
        self._watcher.start()

    # -- connection ----------------------------------------------------------

    def _on_peer(self, peer: Peer) -> None:
        """A client of the server connected: ours if it is the first (own server) or our pid."""
        if self._peer is not None:
            return
        if not self._owns_rpc:
            info = peer.channel.peer_info
            if self._pid is None or info.get("pid") != self._pid:
                return
        self._attach(peer)

    def _attach(self, peer: Peer) -> None:
        with self._lock:
            if self._peer is not None:
                return
            self._peer = peer
            subscriptions = list(self._subscriptions)
        for pattern, handler in subscriptions:
            peer.on(pattern, handler)
        peer.channel.on_message(self._notice_ready)
        self._changed.set()  # a ready delivered before _notice_ready counts too

    def _notice_ready(self, msg: IpcMessage) -> None:
        if msg.type is IpcMessageType.READY:
            self._changed.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Wait for the backend's ``ready``; False after ``timeout`` seconds.

        Raises :class:`BackendError` if the backend exits first. On the Qt
        main thread the event loop keeps running meanwhile (a Qt server accepts
        the backend's connection there).
        """
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            peer = self._peer
            if peer is not None and peer.wait_ready(0):
                return True
            if self._exited.is_set():
                raise BackendError(
                    f"backend {self.argv[0]!r} exited before it was ready",
                    returncode=self.child.returncode,
                    stderr_tail=self.child.final_stderr_tail(),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _wait(self._changed, remaining)

    def _watch(self) -> None:
        returncode = self.child.popen.wait()
        self._exited.set()
        self._changed.set()
        peer = self._peer
        if peer is not None:
            wait_closed(peer.channel, 2.0)  # take in what it sent before it exited
        self.child.final_stderr_tail()  # let its last words reach our stderr first
        level = logging.DEBUG if returncode == 0 else logging.WARNING
        log.log(
            level, "backend %s (pid %s) exited with code %s", self.argv[0], self.pid, returncode
        )
        if peer is not None:
            peer.channel.shutdown()  # pending requests fail with -32002
        self._release()

    def _release(self) -> None:
        self._stop_listening()
        if self._owns_rpc and self._rpc is not None:
            self._rpc.close()
        with _live_lock:
            _live.discard(self)

    # -- talking to it ---------------------------------------------------------

    @property
    def peer(self) -> Peer:
        """The :class:`Peer` talking to the backend; ``BackendError`` before it connected."""
        peer = self._peer
        if peer is None:
            raise BackendError(
                f"backend {self.argv[0]!r} has not connected",
                returncode=self.child.returncode,
                stderr_tail=self.stderr_tail,
            )
        return peer

    def request(self, method: str, data: Any = None, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on the backend; raises :class:`IpcCallError` (see the class doc)."""
        try:
            return self.peer.request(method, data, timeout)
        except IpcCallError as exc:
            raise _explain_exit(exc, self.child) from exc.__cause__

    def request_async(
        self, method: str, data: Any = None, timeout: Optional[float] = None
    ) -> concurrent.futures.Future[Any]:
        """Like ``request``, returning a ``concurrent.futures.Future``."""
        return self.peer.request_async(method, data, timeout)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to the backend."""
        self.peer.emit(event, data)

    def on(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event, data)`` for the backend's events matching ``pattern``.

        May be called before the backend connects. Returns an unsubscribe function.
        """
        entry = (pattern, handler)
        with self._lock:
            self._subscriptions.append(entry)
            peer = self._peer
        unsubscribe_peer = peer.on(pattern, handler) if peer is not None else _nothing

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscriptions:
                    self._subscriptions.remove(entry)
            unsubscribe_peer()

        return unsubscribe

    @property
    def handler_names(self) -> list[str]:
        """Handler names from the backend's latest ``ready``."""
        peer = self._peer
        return peer.remote_handler_names if peer is not None else []

    # -- the process -----------------------------------------------------------

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the backend has exited, else ``None``."""
        return self.child.returncode

    @property
    def stderr_tail(self) -> str:
        """The last few KiB the backend wrote to stderr."""
        return self.child.stderr_tail()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the backend to exit and for what it sent to be delivered; its exit code.

        Raises ``ChannelTimeout`` if it still runs after ``timeout`` seconds.
        """
        if not _wait(self._exited, timeout):
            raise ChannelTimeout(f"backend {self.argv[0]!r} still runs after {timeout}s")
        returncode = self.child.popen.wait()
        if self._watcher is not threading.current_thread():
            self._watcher.join(5.0)  # bounded: the watcher gives the channel 2s to drain
        return returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Close the connection, give the backend ``timeout`` seconds to exit, then end it.

        A backend in ``serve_forever()`` exits on its own when the connection
        closes; one that does not is terminated, then killed. Returns the exit
        code. Idempotent.
        """
        peer = self._peer
        if peer is not None:
            peer.channel.close()
        self._release()
        if not _wait(self._exited, timeout):
            log.warning("backend %s did not exit within %ss: terminating", self.argv[0], timeout)
            self.child.end(grace=2.0)
        if self._watcher is not threading.current_thread():
            self._watcher.join(5.0)
        return self.child.popen.wait()

    def __enter__(self) -> BackendHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited ({self.returncode})"
        return f"<BackendHandle {self.argv[0]!r} pid {self.pid} {self.mode.value} {state}>"


def _explain_exit(exc: IpcCallError, child: ChildProcess) -> IpcCallError:
    """-32002 because the backend died: say so, with its exit code and stderr tail."""
    if exc.code != ErrorCode.SHUTTING_DOWN:
        return exc
    returncode = child.wait(1.0)
    if returncode is None:
        return exc
    tail = child.final_stderr_tail()
    return IpcCallError(
        ErrorCode.SHUTTING_DOWN,
        f"the backend exited with code {returncode}"
        + (f"; its stderr ends with:\n{tail.rstrip()}" if tail else ""),
        {"returncode": returncode, "stderr_tail": tail},
        method=exc.method,
    )


def _child_environment(env: Mapping[str, str], mode: IpcMode) -> dict[str, str]:
    """``env`` for a backend of ``mode``, without a channel of its own yet."""
    child_env = dict(env)
    for key in (ENV_CHANNEL, ENV_TOKEN):
        child_env.pop(key, None)  # a host may itself run as someone's backend
    child_env[ENV_PACKED] = "1"
    child_env[ENV_MODE] = mode.value
    return child_env


def _nothing() -> None:
    pass


def _wait(event: threading.Event, timeout: Optional[float]) -> bool:
    """``event.wait(timeout)``; on the Qt main thread, with the event loop running meanwhile."""
    if qt_app_exists():
        from ..main_thread.channel import main_thread_channel
        from ..qt.compat import on_qt_main_thread

        if on_qt_main_thread():
            return main_thread_channel().wait_event(event, timeout)
    return event.wait(timeout)


def new_channel_name() -> str:
    """A fresh channel name: ``auroraview_<pid>_<random>``."""
    return f"auroraview_{os.getpid()}_{secrets.token_hex(4)}"


def backend_mode(mode: Union[IpcMode, str, None] = None) -> IpcMode:
    """The transport a backend runs over: ``mode``, else ``AURORAVIEW_IPC_MODE``, else
    ``local_socket``. Raises ``IpcChannelError`` for a mode a backend cannot use."""
    if isinstance(mode, IpcMode):
        ipc_mode = mode
    else:
        ipc_mode = IpcMode.parse(mode or os.environ.get(ENV_MODE) or IpcMode.LOCAL_SOCKET.value)
    if ipc_mode not in (IpcMode.LOCAL_SOCKET, IpcMode.LEGACY):
        raise IpcChannelError(f"a backend runs over local_socket or legacy, not {ipc_mode.value}")
    return ipc_mode


def spawn_backend(
    command: Command,
    *,
    mode: Union[IpcMode, str, None] = None,
    registry: Optional[HandlerRegistry] = None,
    server: Optional[RpcServer] = None,
    token: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    ready_timeout: float = READY_TIMEOUT,
    wait_ready: bool = True,
    request_timeout: float = DEFAULT_TIMEOUT,
    peer_name: Optional[str] = None,
    executor: Optional[concurrent.futures.Executor] = None,
    kill_with_host: bool = True,
) -> BackendHandle:
    """Start a backend and wait for its ``ready``; see the module docstring.

    ``command``: an argv list, or a string of Python code run with
    ``sys.executable -c``. ``mode``: ``"local_socket"`` (default) or
    ``"legacy"``; ``None`` reads ``AURORAVIEW_IPC_MODE``. ``registry``: the
    host-side handlers the backend may call. ``server``: an :class:`RpcServer`
    the host already runs (a DCC's), with its ``token``; the backend's
    connection is the one whose ``hello`` carries the child's pid. Without it a
    pure-Python server on a fresh channel (``auroraview_<pid>_<random>``) with
    a fresh token is made, and closed with the backend. ``env`` replaces
    ``os.environ`` as the base of the child's environment.

    Raises :class:`BackendError` (with exit code and stderr tail) when the
    backend cannot start, exits, or is not ready within ``ready_timeout``
    seconds (it is then stopped). ``wait_ready=False`` returns at once; call
    ``wait_ready()`` later.
    """
    ipc_mode = backend_mode(mode)
    if server is not None and registry is not None:
        raise ValueError("pass registry to the RpcServer given as server, not to spawn_backend")
    if server is not None and ipc_mode is IpcMode.LEGACY:
        raise ValueError("a legacy backend talks over its own pipes: server does not apply")
    argv = [sys.executable, "-c", command] if isinstance(command, str) else list(command)
    if server is None:
        name = new_channel_name()
        token = secrets.token_urlsafe(16)
    else:
        name = server.server.name
        registry = server.registry
    handle = BackendHandle.spawn(
        argv,
        mode=ipc_mode,
        name=name,
        registry=registry if registry is not None else HandlerRegistry(),
        server=server,
        token=token,
        env=os.environ if env is None else env,
        cwd=cwd,
        peer_options={"name": peer_name, "timeout": request_timeout, "executor": executor},
        kill_with_host=kill_with_host,
    )
    if wait_ready and not handle.wait_ready(ready_timeout):
        tail = handle.stderr_tail
        returncode = handle.stop(timeout=1.0)
        raise BackendError(
            f"backend {argv[0]!r} was not ready within {ready_timeout}s (stopped)",
            returncode=returncode,
            stderr_tail=handle.stderr_tail or tail,
        )
    return handle
