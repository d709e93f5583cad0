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

Backend side, :func:`connect_backend`: reads that environment and returns a
:class:`BackendPeer` (a :class:`Peer`); ``serve_forever()`` announces the
handlers and returns when the host disconnects. ``print()`` is fine anywhere.

``AURORAVIEW_IPC_MODE=legacy`` (or ``mode="legacy"``) switches both sides to
NDJSON over the child's stdin/stdout (:mod:`aurora_dcc.transport.stdio`), same
API; there the backend's stdout is redirected to its stderr, so ``print()``
still works and shows up on the host's stderr.

Usage (host)::

    with spawn_backend(["python", "backend.py"], ready_timeout=10) as backend:
        backend.handlers                         # ['add', ...] from its ready
        backend.on("progress", lambda event, data: log.info("%s", data))
        backend.request("add", {"a": 1, "b": 2}) # 3

Usage (backend.py)::

    peer = connect_backend()

    @peer.handler("add")
    def add(a, b):
        return a + b

    peer.serve_forever()                         # until the host goes away
"""

from __future__ import annotations

import atexit
import concurrent.futures
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Callable, Optional, Union

from ..channel.base import IpcChannel
from ..errors import ChannelTimeout, ErrorCode, IpcChannelError, ShuttingDown
from ..protocol.message import IpcMessage, IpcMessageType
from ..rpc.peer import DEFAULT_TIMEOUT, EventHandler, HandlerRegistry, IpcCallError, Peer
from ..rpc.server import RpcServer
from ..transport.local_socket import LocalSocketChannelServer
from ..transport.stdio import StdioChannel
from .environment import ENV_CHANNEL, ENV_MODE, ENV_PACKED, ENV_TOKEN
from .factory import IpcChannelFactory, IpcMode, auto_detect, qt_app_exists

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

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
STDERR_TAIL_BYTES = 8 * 1024
"""How much of a child's stderr is kept for error messages."""

Command = Union[str, Sequence[str]]


class BackendError(IpcChannelError):
    """A backend could not start, exited early, or never became ready.

    ``returncode`` is its exit code (``None`` while it still ran; negative: the
    signal that killed it on Unix), ``stderr_tail`` the end of what it wrote to
    stderr. Both are in the message too.

    Usage::

        try:
            backend = spawn_backend(["python", "backend.py"])
        except BackendError as exc:
            log.error("backend failed (%s): %s", exc.returncode, exc.stderr_tail)
    """

    code = ErrorCode.SHUTTING_DOWN

    def __init__(
        self, message: str, *, returncode: Optional[int] = None, stderr_tail: str = ""
    ) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if returncode is not None:
            message += f" (exit code {returncode})"
        if stderr_tail:
            message += f"; its stderr ends with:\n{stderr_tail.rstrip()}"
        super().__init__(message)


def wait_closed(channel: IpcChannel, timeout: Optional[float] = None) -> bool:
    """Wait until ``channel``'s connection has ended; False if ``timeout`` passed first.

    Works for a channel whose messages go to ``on_message`` handlers (a
    ``Peer``): its inbox stays empty, so ``receive`` returns only by raising
    once the connection is gone. Anything that does land in the inbox is dropped.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            msg = channel.receive(remaining)
        except (ConnectionError, ShuttingDown):
            return True
        except ChannelTimeout:
            return False
        log.debug("channel %r: %s message without a handler dropped", channel.name, msg.type)


# -- backend side ---------------------------------------------------------------


class BackendPeer(Peer):
    """The :class:`Peer` a backend gets from :func:`connect_backend`.

    Usage::

        peer = connect_backend()
        peer.register("add", lambda a, b: a + b)
        peer.emit("progress", {"done": 1})
        peer.serve_forever()          # announce, then return once the host disconnects
    """

    def serve_forever(self, timeout: Optional[float] = None) -> bool:
        """Announce the handlers (once), then wait for the host to disconnect.

        Returns True when the connection closed (the channel is then closed
        too), False when ``timeout`` passed first.
        """
        if not self._session_started:
            self.announce()
        if not wait_closed(self.channel, timeout):
            return False
        self.channel.close()
        return True


def connect_backend(
    handlers: Optional[HandlerRegistry] = None,
    *,
    name: Optional[str] = None,
    timeout: float = READY_TIMEOUT,
    request_timeout: float = DEFAULT_TIMEOUT,
    executor: Optional[concurrent.futures.Executor] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> BackendPeer:
    """Connect this process (a backend started by :func:`spawn_backend`) to its host.

    Reads the environment (``environ`` defaults to ``os.environ``); in legacy
    mode takes over stdin/stdout (``print()`` then goes to stderr). Raises
    :class:`BackendError` when the environment names no host, and the
    transport's errors (``Disconnected``, ``Unauthorized``, ``ChannelTimeout``)
    when it cannot connect within ``timeout`` seconds. Handlers run on the
    channel's reader thread unless ``executor`` is given; announce them with
    ``serve_forever()`` (or ``announce()``) once registered.
    """
    env = os.environ if environ is None else environ
    mode = auto_detect(env)
    if mode is IpcMode.LEGACY:
        channel = IpcChannelFactory.create(mode, "stdio", timeout=timeout)
    elif env.get(ENV_CHANNEL):
        channel = IpcChannelFactory.create(
            IpcMode.LOCAL_SOCKET, env[ENV_CHANNEL], token=env.get(ENV_TOKEN), timeout=timeout
        )
    else:
        raise BackendError(
            f"not started as a backend: {ENV_CHANNEL} is not set "
            f"(and {ENV_MODE} is not 'legacy'); start this script with spawn_backend()"
        )
    return BackendPeer(channel, handlers, name=name, timeout=request_timeout, executor=executor)


# -- host side ----------------------------------------------------------------


class _StderrTee:
    """Forwards a child's stderr to ours as it comes, keeping the last ``limit`` bytes."""

    def __init__(self, pipe: IO[bytes], limit: int = STDERR_TAIL_BYTES) -> None:
        self._pipe = pipe
        self._limit = limit
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="aurora-stderr-tee", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._pipe.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                _forward_to_stderr(chunk)
                with self._lock:
                    self._tail += chunk
                    del self._tail[: -self._limit]
        finally:
            self._pipe.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def tail(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")


def _forward_to_stderr(chunk: bytes) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(chunk)
            buffer.flush()
        else:
            stream.write(chunk.decode("utf-8", "replace"))
            stream.flush()
    except (OSError, ValueError):  # our stderr is closed or broken: keep the tail anyway
        pass


def _kill_with_parent() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies.

    Only from the main thread: the kernel sends the signal when the *thread*
    that forked exits, and a worker thread may end long before the host.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


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
        server: Optional[RpcServer],
        token: Optional[str],
        env: Mapping[str, str],
        cwd: Optional[str],
        peer_name: Optional[str],
        request_timeout: float,
        executor: Optional[concurrent.futures.Executor],
        kill_with_host: bool,
    ) -> None:
        self.argv = argv
        self.mode = mode
        self.name = name
        self.registry = registry
        self._lock = threading.Lock()
        self._changed = threading.Event()  # connected, ready or exited: wait_ready re-checks
        self._exited = threading.Event()
        self._peer: Optional[Peer] = None
        self._subscriptions: list[tuple[str, EventHandler]] = []
        self._rpc: Optional[RpcServer] = None
        self._owns_rpc = False
        self._stop_listening: Callable[[], None] = _nothing
        self._pid: Optional[int] = None  # set once started: a shared server's peers match it
        peer_options: dict[str, Any] = {
            "name": peer_name,
            "timeout": request_timeout,
            "executor": executor,
        }
        child_env = dict(env)
        for key in (ENV_CHANNEL, ENV_TOKEN):
            child_env.pop(key, None)  # a host may itself run as someone's backend
        child_env[ENV_PACKED] = "1"
        child_env[ENV_MODE] = mode.value
        if mode is IpcMode.LOCAL_SOCKET:
            if server is None:
                server = RpcServer(
                    LocalSocketChannelServer(name, token=token, peer_name=peer_name),
                    registry,
                    **peer_options,
                )
                self._owns_rpc = True
            self._rpc = server
            self._stop_listening = server.on_peer(self._on_peer)
            child_env[ENV_CHANNEL] = name
            if token is not None:
                child_env[ENV_TOKEN] = token
        pipe = subprocess.PIPE
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=pipe if mode is IpcMode.LEGACY else subprocess.DEVNULL,
                stdout=pipe if mode is IpcMode.LEGACY else None,
                stderr=pipe,
                env=child_env,
                cwd=cwd,
                preexec_fn=_kill_with_parent() if kill_with_host else None,
            )
        except OSError as exc:
            self._release()
            raise BackendError(f"cannot start backend {argv[0]!r}: {exc}") from exc
        assert self.process.stderr is not None
        self._tee = _StderrTee(self.process.stderr)
        self._pid = self.process.pid
        if server is not None and not self._owns_rpc:
            for peer in server.peers:  # it may have connected before _pid was set
                self._on_peer(peer)
        if mode is IpcMode.LEGACY:
            channel = StdioChannel.serve_process(
                self.process, name, list_handler_names=registry.names, peer_name=peer_name
            )
            self._attach(Peer(channel, registry, session_started=True, **peer_options))
        with _live_lock:
            _live.add(self)
        self._watcher = threading.Thread(
            target=self._watch, name=f"aurora-backend-{self.process.pid}", daemon=True
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

    def _is_ready(self) -> bool:
        peer = self._peer
        return peer is not None and peer.wait_ready(0)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Wait for the backend's ``ready``; False after ``timeout`` seconds.

        Raises :class:`BackendError` if the backend exits first. On the Qt
        main thread the event loop keeps running meanwhile (a Qt server accepts
        the backend's connection there).
        """
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if self._is_ready():
                return True
            if self._exited.is_set():
                self._tee.join(1.0)
                raise BackendError(
                    f"backend {self.argv[0]!r} exited before it was ready",
                    returncode=self.process.returncode,
                    stderr_tail=self.stderr_tail,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _wait(self._changed, remaining)

    def _watch(self) -> None:
        returncode = self.process.wait()
        self._exited.set()
        self._changed.set()
        peer = self._peer
        if peer is not None:
            wait_closed(peer.channel, 2.0)  # take in what it sent before it exited
        self._tee.join(1.0)
        log.log(
            logging.DEBUG if returncode == 0 else logging.WARNING,
            "backend %s (pid %s) exited with code %s",
            self.argv[0],
            self.process.pid,
            returncode,
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
                returncode=self.process.poll(),
                stderr_tail=self.stderr_tail,
            )
        return peer

    def request(self, method: str, data: Any = None, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on the backend; raises :class:`IpcCallError` (see the class doc)."""
        try:
            return self.peer.request(method, data, timeout)
        except IpcCallError as exc:
            raise self._explain(exc) from exc.__cause__

    def request_async(
        self, method: str, data: Any = None, timeout: Optional[float] = None
    ) -> concurrent.futures.Future[Any]:
        """Like ``request``, returning a ``concurrent.futures.Future``."""
        return self.peer.request_async(method, data, timeout)

    def _explain(self, exc: IpcCallError) -> IpcCallError:
        """-32002 because the backend died: say so, with its exit code and stderr tail."""
        if exc.code != ErrorCode.SHUTTING_DOWN:
            return exc
        try:
            returncode = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return exc
        self._tee.join(1.0)
        tail = self.stderr_tail
        return IpcCallError(
            ErrorCode.SHUTTING_DOWN,
            f"the backend exited with code {returncode}"
            + (f"; its stderr ends with:\n{tail.rstrip()}" if tail else ""),
            {"returncode": returncode, "stderr_tail": tail},
            method=exc.method,
        )

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
    def handlers(self) -> list[str]:
        """Handler names from the backend's latest ``ready``."""
        peer = self._peer
        return peer.remote_handlers if peer is not None else []

    # -- the process -----------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the backend has exited, else ``None``."""
        return self.process.poll()

    @property
    def stderr_tail(self) -> str:
        """The last few KiB the backend wrote to stderr."""
        return self._tee.tail()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the backend to exit and for what it sent to be delivered; its exit code.

        Raises ``ChannelTimeout`` if it still runs after ``timeout`` seconds.
        """
        if not _wait(self._exited, timeout):
            raise ChannelTimeout(f"backend {self.argv[0]!r} still runs after {timeout}s")
        returncode = self.process.wait()
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
            self.process.terminate()
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._watcher is not threading.current_thread():
            self._watcher.join(5.0)
        return self.process.returncode

    def __enter__(self) -> BackendHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited ({self.returncode})"
        return f"<BackendHandle {self.argv[0]!r} pid {self.pid} {self.mode.value} {state}>"


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
    handlers: Optional[HandlerRegistry] = None,
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
    ``"legacy"``; ``None`` reads ``AURORAVIEW_IPC_MODE``. ``handlers``: the
    host-side registry the backend may call. ``server``: an :class:`RpcServer`
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
    if server is not None and handlers is not None:
        raise ValueError("pass handlers to the RpcServer given as server, not to spawn_backend")
    if server is not None and ipc_mode is IpcMode.LEGACY:
        raise ValueError("a legacy backend talks over its own pipes: server does not apply")
    argv = [sys.executable, "-c", command] if isinstance(command, str) else list(command)
    if server is None:
        name = new_channel_name()
        token = secrets.token_urlsafe(16)
    else:
        name = server.server.name
    handle = BackendHandle(
        argv,
        mode=ipc_mode,
        name=name,
        registry=server.registry if server is not None else (handlers or HandlerRegistry()),
        server=server,
        token=token,
        env=os.environ if env is None else env,
        cwd=cwd,
        peer_name=peer_name,
        request_timeout=request_timeout,
        executor=executor,
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
