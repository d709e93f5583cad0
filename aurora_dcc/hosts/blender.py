"""``BlenderHost``: an aurora_dcc server inside Blender, a process without Qt.

Blender runs no Qt event loop, so the host pairs the pure-Python
``LocalSocketChannelServer`` (its own accept and reader threads) with a
``DccIpcChannel`` over a :class:`~.blender_waker.BlenderWaker`: a persistent
``bpy.app.timers`` function on Blender's main thread. Every request handler,
every event subscriber given to :meth:`BlenderHost.on` and every
``call_in_main_thread`` runs in that timer, on the main thread where ``bpy``
may be used; socket threads only read, queue and write. Each timer tick
drains for at most ``frame_budget`` seconds, so a flood of requests never
freezes Blender's UI. Where the platform allows it (``wake=True``, the
default where supported), the socket thread also cuts the main loop's sleep
short, so a request need not wait for the loop's next pass.

The host closes itself when Blender quits (the add-on's ``unregister()``,
then ``atexit``): clients are told, the socket file is removed and the timer
is unregistered.

Usage (Blender's Python console, a ``--python`` script, or the add-on in
``hosts/blender``)::

    from aurora_dcc.hosts import blender as aurora_blender
    host = aurora_blender.start()            # idempotent; serves scene.info/ls/select

    @host.handler("mesh.count")
    def mesh_count():
        return len(bpy.data.meshes)          # runs on Blender's main thread

With ``bpy`` imported as a module nothing runs timers: drive the host with
:func:`pump` (tests, headless scripts)::

    import bpy
    host = aurora_blender.start()
    while serving:
        aurora_blender.pump(0.1)             # handlers run here, on this thread
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
from typing import Any, Callable, Optional, TypeVar

from ..errors import IpcChannelError
from ..main_thread.channel import DccIpcChannel
from ..main_thread.in_process import InProcessServer
from ..process.discovery import publish_running_host
from ..process.environment import ENV_CHANNEL, ENV_TOKEN
from ..process.factory import register_process_host, unregister_process_host
from ..protocol.message import IpcMessage
from ..rpc.peer import Peer
from ..rpc.registry import F, HandlerRegistry
from ..rpc.server import RpcServer
from ..transport.local_socket import LocalSocketChannelServer
from .blender_wake import install_wake, uninstall_wake, wake_served
from .blender_waker import BlenderWaker
from .host_settings import refuse_other_settings, started_with

__all__ = ["BlenderHost", "current_host", "pump", "start", "start_host", "stop_host"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ClientsCallback = Callable[[int], None]


class _Posted:
    """A function posted to the main thread, and the future of its result."""

    __slots__ = ("args", "fn", "future", "kwargs", "taken")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[Any],
        taken: Optional[threading.Semaphore],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.taken = taken  # the read-ahead slot this post holds, if any

    def run(self) -> None:
        if self.taken is not None:
            self.taken.release()
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to whoever holds the future, and logged
            log.exception("%r, run on the main thread, raised", self.fn)
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


def _run_posted(msg: IpcMessage) -> None:
    """The main channel's message handler: run a posted function (main thread)."""
    posted = msg.data
    if isinstance(posted, _Posted):
        posted.run()


class _MainThreadExecutor(concurrent.futures.Executor):
    """Runs submitted functions in the host's timer, in order, without waiting for them.

    Each ``Peer`` of the host's ``RpcServer`` hands its requests here, so no
    handler runs on a socket thread.

    Socket threads (``submit``) may run at most ``read_ahead`` posts ahead of
    the main thread; past that, ``submit`` waits (the reader stops reading,
    and the client's writes wait in turn). A flood then never piles thousands
    of requests' objects in memory, whose promotion to the oldest garbage
    collector generation would bring a full collection, which holds the GIL
    (so freezes Blender's UI) for longer than a frame. The main thread never
    waits here, nor does :meth:`post_now` (the host's ``post``, for any code).
    """

    def __init__(self, channel: DccIpcChannel, read_ahead: int) -> None:
        if read_ahead < 1:
            raise ValueError(f"read_ahead must be at least 1, not {read_ahead}")
        self._channel = channel
        self._room = threading.Semaphore(read_ahead)
        self._starved = False  # a thread waited for room since take_starved()
        self._closed = False

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        taken = None
        if not self._channel.on_main_thread():
            taken = self._room
            if not taken.acquire(blocking=False):
                self._starved = True
                taken.acquire()
            if self._closed:
                taken.release()  # and the next waiter sees the close too
                raise RuntimeError("the Blender host is shutting down")
        return self._post(fn, args, kwargs, taken)

    def post_now(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Like ``submit``, never waiting for room: for code that may hold what the main
        thread needs (a user's thread), or posts little."""
        return self._post(fn, args, {}, None)

    def _post(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        taken: Optional[threading.Semaphore],
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            self._channel.send(IpcMessage.data_message(_Posted(fn, args, kwargs, future, taken)))
        except IpcChannelError as exc:  # Peer answers -32002 on RuntimeError
            if taken is not None:
                taken.release()
            raise RuntimeError(f"the Blender host is shutting down: {exc}") from exc
        return future

    def take_starved(self) -> bool:
        """Main thread: whether a thread waited for room since the last call."""
        starved, self._starved = self._starved, False
        return starved

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new posts; a thread waiting for room raises at once (any thread)."""
        self._closed = True
        self._room.release()  # each woken waiter releases again for the next one


def _import_bpy() -> Any:
    try:
        import bpy
    except ImportError as exc:
        raise RuntimeError(
            "the Blender host runs inside Blender, or where the bpy module is installed"
        ) from exc
    return bpy


class BlenderHost:
    """Server, RPC and main-thread channel of one Blender process (see the module docstring).

    ``name`` defaults to ``auroraview_<pid>``; with a ``token`` clients must
    present it in ``hello``. ``registry`` is the :class:`HandlerRegistry`
    to serve (a new one if None). ``wake`` turns the main-loop wake on or
    off (None: its default where the platform supports it); it is never
    used in background or module mode, where no loop sleeps. ``frame_budget``
    bounds each timer tick; ``send_timeout`` bounds how long the main thread
    may block writing to a client that does not read; ``read_ahead`` is how
    many requests and events the socket threads may queue for the main
    thread before they stop reading (backpressure: a flood keeps few objects
    alive, so it brings no long garbage collection). Create it on Blender's
    main thread (module mode: on the thread that will :meth:`pump`).
    ``main`` (a ``DccIpcChannel``) carries the functions posted to the main
    thread, requests among them: use :meth:`post` and
    :meth:`call_in_main_thread` rather than its ``on_message``. What a
    handler sends to clients goes out when its tick's drain ends (one write
    per client), so a handler must not wait for a client's reply: use
    ``peer.request_async``.

    Usage::

        host = BlenderHost("aurora_blender", token=token)
        host.register("mesh.count", lambda: len(bpy.data.meshes))
        host.on_clients_changed(lambda n: print(n, "clients"))
        host.close()                              # also at quit
    """

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        token: Optional[str] = None,
        peer_name: Optional[str] = None,
        registry: Optional[HandlerRegistry] = None,
        export_env: bool = True,
        wake: Optional[bool] = None,
        idle_interval: float = 0.0,
        frame_budget: float = 0.008,
        send_timeout: float = 2.0,
        read_ahead: int = 32,
    ) -> None:
        bpy = _import_bpy()
        background = bool(bpy.app.background)
        if not background and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("start the Blender host on Blender's main thread")
        self.name = name or f"auroraview_{os.getpid()}"
        self.token = token
        self.peer_name = peer_name or f"blender-{bpy.app.version_string}"
        self.waker = BlenderWaker(idle_interval=idle_interval)
        self.main = DccIpcChannel(f"{self.name}.main", waker=self.waker, frame_budget=frame_budget)
        self.main.on_message(_run_posted)
        self._executor = _MainThreadExecutor(self.main, read_ahead)
        # Without the main-loop wake, a tick that made room waits for the readers'
        # next requests (in budget) rather than leave them to the loop's next pass.
        self.waker.set_refill(self._executor.take_starved, frame_budget)
        self._close_callbacks: list[Callable[[], None]] = []
        self._clients_callbacks: list[ClientsCallback] = []
        self._closed = False
        self._uninstall_wake: Optional[Callable[[], None]] = None
        try:
            self.server = LocalSocketChannelServer(
                self.name, token=token, peer_name=self.peer_name, send_timeout=send_timeout
            )
        except BaseException:
            self.main.shutdown()
            raise
        self.rpc = RpcServer(self.server, registry, name=self.peer_name, executor=self._executor)
        # A drain's responses and events to one client go out in one write, not one each;
        # a handler's progress events, sent apart, still leave as they are emitted.
        self.waker.set_drain_context(functools.partial(self.server.batch, write_after_pause=True))
        self.rpc.on_peer(self._peer_joined)
        # Clients in this process (create_for_context()) reach the same registry, no socket.
        self.in_process = InProcessServer(self.name, self.main, peer_name=self.peer_name)
        self.in_process_rpc = RpcServer(self.in_process, self.rpc.registry, name=self.peer_name)
        register_process_host(self.in_process)
        if not background and wake is not False:
            self._install_wake(wake)
        atexit.register(self.close)
        if export_env:
            os.environ[ENV_CHANNEL] = self.name
            if token is not None:
                os.environ[ENV_TOKEN] = token
        log.info("aurora_dcc host %r listening at %s", self.peer_name, self.server.address)
        # Listed for `aurora-dcc hosts` and connect("blender").
        self.published = publish_running_host(
            self.name,
            self.server.address,
            peer_name=self.peer_name,
            token=token,
            dcc="blender",
            dcc_version=str(bpy.app.version_string),
            scene=str(getattr(bpy.data, "filepath", "") or ""),  # restricted in register()
        )

    # -- serving -------------------------------------------------------------

    @property
    def registry(self) -> HandlerRegistry:
        return self.rpc.registry

    def handler(self, name: Optional[str] = None) -> Callable[[F], F]:
        """Decorator: serve a request handler (it runs on Blender's main thread)."""
        return self.rpc.handler(name)

    def register(self, name: str, fn: F) -> F:
        return self.rpc.register(name, fn)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client (any thread; in this process too)."""
        self.rpc.emit(event, data)
        self.in_process.emit(event, data)

    def on(self, pattern: str, handler: Callable[[str, Any], None]) -> None:
        """Subscribe ``handler(event, data)`` to every client's events (run on the main thread)."""

        def on_socket_thread(event: str, data: Any) -> None:
            self._executor.submit(handler, event, data)  # a flood of events waits too

        self.rpc.on(pattern, on_socket_thread)
        self.in_process_rpc.on(pattern, handler)  # already on the main thread

    # -- the main thread -----------------------------------------------------

    def post(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on the main thread soon, without waiting (any thread)."""
        return self._executor.post_now(fn, *args)

    def call_in_main_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = 30.0, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the main thread and return its result (any thread).

        Runs inline on the main thread. See ``DccIpcChannel.call_in_main_thread``.
        """
        return self.main.call_in_main_thread(fn, *args, timeout=timeout, **kwargs)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Main thread: run ``fn()`` on the main thread ``delay`` seconds from now (or later)."""
        self.waker.call_later(delay, fn)

    def pump(
        self, timeout: Optional[float] = 0.0, until: Optional[Callable[[], bool]] = None
    ) -> None:
        """Module mode: run the host's main-thread work here (see :func:`pump`)."""
        self.waker.pump(timeout, until)

    # -- clients -------------------------------------------------------------

    @property
    def client_count(self) -> int:
        """The number of connected clients."""
        return len(self.server.connections)

    def on_clients_changed(self, callback: ClientsCallback) -> None:
        """Call ``callback(client_count)`` on the main thread when a client comes or goes."""
        self._clients_callbacks.append(callback)

    def _peer_joined(self, peer: Peer) -> None:
        # The accept thread: the callbacks run on the main thread.
        self._post_clients_changed()
        peer.channel.shutdown_state.on_shutdown(self._post_clients_changed)

    def _post_clients_changed(self) -> None:
        if self._clients_callbacks and not self._closed:
            with contextlib.suppress(RuntimeError):  # closing: no one to tell
                self.post(self._clients_changed)

    def _clients_changed(self) -> None:
        count = self.client_count
        for callback in list(self._clients_callbacks):
            try:
                callback(count)
            except Exception:
                log.exception("clients-changed callback %r failed", callback)

    # -- the main-loop wake ----------------------------------------------------

    def _install_wake(self, wake: Optional[bool]) -> None:
        interrupt = install_wake(wake)
        if interrupt is not None:  # else the timer's poll alone
            self.waker.set_interrupt(interrupt, served=wake_served)
            self._uninstall_wake = uninstall_wake  # once per install that returned a function

    def _remove_wake(self) -> None:
        uninstall, self._uninstall_wake = self._uninstall_wake, None
        self.waker.set_interrupt(None)
        if uninstall is not None:
            try:
                uninstall()
            except Exception:
                log.exception("removing the main-loop wake failed")

    # -- lifetime ------------------------------------------------------------

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the host closes, before its clients go (to unhook handlers)."""
        self._close_callbacks.append(callback)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every client and the server, unregister the timer. Idempotent, never raises.

        Call it on the main thread; elsewhere the timer unregisters itself at
        its next tick.
        """
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown()  # a reader waiting for room answers "shutting down" now
        atexit.unregister(self.close)
        if self.published is not None:
            self.published.remove()
        for callback in self._close_callbacks:
            try:
                callback()
            except Exception:
                log.exception("close callback %r failed", callback)
        self._remove_wake()
        unregister_process_host(self.in_process)
        self.in_process_rpc.close()
        try:
            self.rpc.close()
        except Exception:
            log.exception("closing the server failed")
        self.main.shutdown()
        self.waker.close()
        if os.environ.get(ENV_CHANNEL) == self.name:  # processes started later see no host
            del os.environ[ENV_CHANNEL]
            if self.token is not None and os.environ.get(ENV_TOKEN) == self.token:
                del os.environ[ENV_TOKEN]
        global _host
        if _host is self:
            _host = None
        log.info("aurora_dcc host %r closed", self.peer_name)

    def __enter__(self) -> BlenderHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.client_count} client(s)"
        return f"<BlenderHost {self.name!r}, {state}>"


_host: Optional[BlenderHost] = None
_host_settings: dict[str, Any] = {}  # what _host runs with (see host_settings)


def start_host(name: Optional[str] = None, **options: Any) -> BlenderHost:
    """The process's host, started on first call; later calls return the same one.

    A later call asking for other settings than the running host's raises
    ``HostSettingsError`` naming them (settings left out match).
    """
    global _host, _host_settings
    if _host is not None:
        refuse_other_settings(_host, _host_settings, name, options)
        return _host
    host = BlenderHost(name, **options)
    _host, _host_settings = host, started_with(BlenderHost, host, options)
    return host


def current_host() -> Optional[BlenderHost]:
    """The running host, or None."""
    return _host


def stop_host() -> None:
    """Close the process's host, if one runs (main thread)."""
    if _host is not None:
        _host.close()


def start(name: Optional[str] = None, **options: Any) -> BlenderHost:
    """The process's host, serving Blender's scene (``scene.info``, ``.ls``, ``.select``).

    Idempotent: a running host is returned as it is (asked for other settings:
    ``HostSettingsError``), given the scene handlers if it has none yet.
    Selections made in Blender are broadcast as ``selection.changed``
    (coalesced). ``mesh.points {"node": name}`` returns a mesh object's vertex
    positions as a float32 buffer. Main thread only.
    """
    from .blender_scene import BlenderScene
    from .scene_handlers import serve_scene

    host = start_host(name, **options)
    if "scene.info" not in host.registry:
        scene = BlenderScene(call_later=host.call_later)
        serve_scene(host, scene)
        host.register("mesh.points", scene.mesh_points)
    return host


def pump(timeout: Optional[float] = 0.0, until: Optional[Callable[[], bool]] = None) -> None:
    """Run the current host's main-thread work on this thread (module mode, ``blender -b``).

    With ``bpy`` imported as a module Blender's main loop does not run, so
    its timers never fire: call ``pump`` on the thread that started the host
    to run queued requests, calls and due callbacks, waiting for more until
    ``timeout`` seconds have passed (0: only what is queued now; None: until
    the host closes) or ``until()`` is true. Does nothing without a host.

    Usage::

        host = start()
        pump(None)                       # serve until a handler calls stop_host()
    """
    host = _host
    if host is not None:
        host.pump(timeout, until)
