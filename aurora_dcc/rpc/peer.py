"""``Peer``: requests, responses and events (RPC) over any ``IpcChannel``.

A ``Peer`` subscribes to a channel with ``on_message`` and speaks the message
layer of PROTOCOL.md on it: it answers requests with the handlers of a
:class:`HandlerRegistry`, matches responses to the requests it sent by
``id`` (any number in flight, from any threads, answered in any order),
delivers events to ``on(pattern, handler)`` subscribers, answers ``ping``,
and keeps track of the other side's ``ready``.

Usage::

    a, b = ThreadChannel.pair("demo")
    server, client = Peer(a), Peer(b)

    @server.handler("scene.info")
    def scene_info(verbose=False):
        return {"nodes": 42, "verbose": verbose}

    client.request("scene.info", {"verbose": True}, timeout=5.0)  # {'nodes': 42, ...}
    future = client.request_async("scene.info")                   # concurrent.futures.Future
    result = await asyncio.wrap_future(future)                    # from asyncio code

    client.on("selection.*", lambda event, data: print(event, data))
    server.emit("selection.changed", {"nodes": ["pCube1"]})

Rules, in one place:

- **Params.** A request's ``data`` is passed to the handler as keyword
  arguments when it is an object (``{}`` calls ``handler()``), as positional
  arguments when it is an array, and as one argument otherwise. Arguments the
  handler's signature cannot take are refused with -32602 before it is called,
  so a ``TypeError`` raised *inside* the handler is -32603 like any other.
  A handler registered with ``raw=True`` gets ``data`` as one argument, as it
  is (a proxy forwarding requests elsewhere).
- **Errors.** Unknown method -32601; handler raised -32603, with
  ``{"type": <exception type name>, "traceback": <text>}`` in ``data``; a
  handler that raises :class:`IpcCallError` answers with that error unchanged
  (a handler can pick its own code, and a proxy passes errors through).
- **Failures of a request.** ``request()`` raises only :class:`IpcCallError`:
  the remote error, -32001 when ``timeout`` passes, -32002 when the channel
  shuts down, the peer sends ``bye`` or this ``Peer`` is closed while the
  request is in flight (and at once for requests made after that); the
  channel error's code when the request cannot be sent (-32004 too large,
  say). Futures from ``request_async()`` fail the same way, within the same
  timeout. A transport tells its ``Peer`` that the connection ended by
  shutting down the channel's ``ShutdownState`` (the socket channels do).
- **Threads.** Handlers and event subscribers run on the thread the channel
  delivers messages on (the DCC's main thread for ``DccIpcChannel``), one
  at a time; pass ``executor=`` to run request handlers there instead.
  A blocking ``request()`` waits with ``channel.wait_event`` (the Qt side keeps
  its event loop running while it waits). Elsewhere, a blocking ``request()``
  or ``ping()`` made on the thread that delivers the channel's messages (from
  a handler or subscriber without an ``executor``) would wait for its own
  thread: it raises ``RuntimeError`` at once instead; use ``request_async()``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import functools
import heapq
import inspect
import itertools
import logging
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Generic, Optional, TypeVar

from ..channel.base import IpcChannel
from ..errors import (
    ErrorCode,
    IpcChannelError,
    IpcError,
    SerializationError,
    ShuttingDown,
)
from ..protocol.handshake import default_peer_name, ready_message
from ..protocol.message import IpcMessage, IpcMessageType, new_message_id

__all__ = ["EventHandler", "HandlerRegistry", "IpcCallError", "Peer"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
EventHandler = Callable[[str, Any], None]
"""An event subscriber: ``handler(event_name, data)``."""

DEFAULT_TIMEOUT = 30.0

_perf = time.perf_counter
_T = IpcMessageType


class IpcCallError(IpcChannelError):
    """A request failed: ``error`` is the :class:`IpcError` (``code``, ``message``, ``data``).

    Raised by ``Peer.request`` (and set on ``request_async`` futures) for a
    remote error, a timeout (-32001) or a shutdown (-32002). A handler may
    raise it to answer with a code of its choice.

    Usage::

        try:
            peer.request("scene.open", {"path": p})
        except IpcCallError as exc:
            if exc.code == ErrorCode.SHUTTING_DOWN: ...
            log.error("%s: %s (%s)", exc.code, exc.message, exc.data)

        def open_scene(path):                      # a handler
            if not os.path.exists(path):
                raise IpcCallError(IpcError.INVALID_PARAMS, f"no such file: {path}")
    """

    def __init__(
        self, code: int, message: str, data: Any = None, *, method: Optional[str] = None
    ) -> None:
        self.error = IpcError(code, message, data)
        self.code = int(code)
        self.method = method
        super().__init__(f"{method}: {message}" if method else message)

    @classmethod
    def from_error(cls, error: IpcError, method: Optional[str] = None) -> IpcCallError:
        return cls(error.code, error.message, error.data, method=method)

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def data(self) -> Any:
        return self.error.data

    def to_ipc_error(self) -> IpcError:
        return self.error

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword-only argument
        return (_call_error, (self.code, self.message, self.data, self.method))

    def __repr__(self) -> str:
        return f"IpcCallError({self.code}, {self.message!r}, data={self.data!r})"


def _call_error(code: int, message: str, data: Any, method: Optional[str]) -> IpcCallError:
    return IpcCallError(code, message, data, method=method)


# -- handlers --------------------------------------------------------------


class _Subscribers(Generic[S]):
    """Subscribers in a copy-on-write tuple: read ``items`` without a lock, from any thread."""

    __slots__ = ("_lock", "items")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: tuple[S, ...] = ()

    def add(self, item: S) -> Callable[[], None]:
        """Add ``item``; returns the function that removes it again."""
        with self._lock:
            self.items = (*self.items, item)

        def unsubscribe() -> None:
            with self._lock:
                self.items = tuple(i for i in self.items if i is not item)

        return unsubscribe


class _Handler:
    """A registered callable, its signature (``None``: nothing to check), and whether raw."""

    __slots__ = ("_fits", "fn", "raw", "signature")

    MAX_SHAPES = 64
    """Argument shapes remembered as fitting the signature (bounded: names come from peers)."""

    def __init__(self, fn: Callable[..., Any], raw: bool) -> None:
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.raw = raw
        self.signature: Optional[inspect.Signature] = None
        self._fits: set[tuple[int, frozenset[str]]] = set()
        if not raw:
            with contextlib.suppress(TypeError, ValueError):  # some builtins have none
                self.signature = inspect.signature(fn)

    def check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` if the handler cannot take these arguments.

        Whether arguments bind depends only on their count and keyword names,
        so shapes that fitted once are remembered and not bound again.
        """
        if self.signature is None:
            return
        shape = (len(args), frozenset(kwargs))
        if shape in self._fits:
            return
        self.signature.bind(*args, **kwargs)
        if len(self._fits) < self.MAX_SHAPES:
            self._fits.add(shape)

    def arguments(self, data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A request's ``data`` as call arguments (see the module docstring)."""
        if self.raw:
            return (data,), {}
        if isinstance(data, dict):
            return (), data
        if isinstance(data, list):
            return tuple(data), {}
        return (data,), {}


class HandlerRegistry:
    """Request handlers by method name; thread-safe, shareable by many ``Peer``s.

    A DCC server serves every connection with one registry; each ``Peer`` on
    it re-announces its handler list when the registry changes.

    Usage::

        registry = HandlerRegistry()
        registry.register("scene.info", scene_info)

        @registry.handler("scene.save")
        def save(path=None): ...

        Peer(channel_1, handlers=registry); Peer(channel_2, handlers=registry)
        server = LocalSocketServer(name, handlers=registry.names)   # names for ``ready``
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Handler] = {}
        self._listeners: _Subscribers[Callable[[], None]] = _Subscribers()

    def register(self, name: str, fn: F, *, raw: bool = False) -> F:
        """Serve ``name`` with ``fn`` (replacing any previous handler); returns ``fn``.

        ``raw=True``: ``fn(data)`` gets the request's ``data`` as it is, whatever
        its shape (for proxies that forward requests elsewhere).
        """
        self.update({name: fn}, raw=raw)
        return fn

    def handler(self, name: Optional[str] = None, *, raw: bool = False) -> Callable[[F], F]:
        """Decorator form of ``register``; the name defaults to the function's."""

        def decorate(fn: F) -> F:
            return self.register(name or fn.__name__, fn, raw=raw)

        return decorate

    def unregister(self, name: str) -> bool:
        """Stop serving ``name``; False if it was not registered."""
        return bool(self.update({}, remove=(name,)))

    def update(
        self,
        handlers: Mapping[str, Callable[..., Any]],
        remove: Iterable[str] = (),
        *,
        raw: bool = False,
    ) -> list[str]:
        """Remove ``remove`` and add ``handlers`` as one change; returns the names removed.

        Listeners hear about it once (one ``ready``, not one per handler).
        """
        for name in handlers:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a handler name must be a non-empty string, not {name!r}")
        entries = {name: _Handler(fn, raw) for name, fn in handlers.items()}
        with self._lock:
            removed = [name for name in remove if self._entries.pop(name, None) is not None]
            self._entries.update(entries)
        if entries or removed:
            for listener in self._listeners.items:
                try:
                    listener()
                except Exception:
                    log.exception("handler registry listener %r raised", listener)
        return removed

    def get(self, name: str) -> Optional[Callable[..., Any]]:
        entry = self._entries.get(name)
        return None if entry is None else entry.fn

    def _entry(self, name: str) -> Optional[_Handler]:
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Sorted names of the registered handlers (what ``ready`` announces)."""
        with self._lock:
            return sorted(self._entries)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every change; returns an unsubscribe function."""
        return self._listeners.add(listener)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<HandlerRegistry {self.names()!r}>"


# -- request timeouts --------------------------------------------------------


class _Deadlines:
    """One daemon thread, shared by every ``Peer``, that fires ``request_async`` timeouts.

    Entries are not removed when a call finishes early: the callback finds
    nothing left to expire and returns.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), callback))
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(
                    target=self._run, name="aurora-rpc-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is callback:
                self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if heap and heap[0][0] <= now:
                        callback = heapq.heappop(heap)[2]
                        break
                    self._cond.wait(heap[0][0] - now if heap else None)
            try:
                callback()
            except Exception:
                log.exception("request timeout callback %r raised", callback)


_deadlines = _Deadlines()


# -- the peer ----------------------------------------------------------------


class _Done:
    """A one-shot ``threading.Event`` on a bare lock: set once, waited on any number of times.

    ``threading.Event`` is built on a Python-level ``Condition``: creating one,
    waiting on it and setting it each cost more than the rest of a request's
    bookkeeping; a lock does the same job in C.
    """

    __slots__ = ("_is_set", "_lock")

    def __init__(self) -> None:
        self._is_set = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Set it (call once)."""
        self._is_set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._is_set

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._is_set:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()  # set for good: later waits return at once
            return True
        return self._is_set


class _Call:
    """A request or ping in flight: settled once, with a result or an error.

    A blocking caller waits on ``done``; ``request_async`` gets ``future``
    instead (a sent request cannot be cancelled, so the future is running).
    """

    __slots__ = ("done", "error", "future", "method", "result", "sent_at")

    def __init__(self, method: Optional[str], use_future: bool) -> None:
        self.method = method  # None for a ping
        self.result: Any = None
        self.error: Optional[IpcCallError] = None
        self.future: Optional[concurrent.futures.Future[Any]] = None
        self.done: Optional[_Done] = None
        if use_future:
            self.future = concurrent.futures.Future()
            self.future.set_running_or_notify_cancel()
        else:
            self.done = _Done()
        self.sent_at = _perf()

    def settle(self, result: Any = None, error: Optional[IpcCallError] = None) -> None:
        """Called exactly once, by whoever popped the call from the pending map."""
        self.result, self.error = result, error
        if self.future is not None:
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)
        elif self.done is not None:
            self.done.set()

    def outcome(self) -> Any:
        """The result, or raise the error, of a blocking call that is settled or expired.

        A reply popped from the pending map just as the wait ended is settled a
        moment later by the thread that popped it; the short wait covers that.
        """
        assert self.done is not None
        self.done.wait(5.0)
        if self.error is not None:
            raise self.error
        return self.result


def _without_token(data: Any) -> dict[str, Any]:
    """A hello's or ready's data to keep: a session token is not kept (nor logged)."""
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if key != "token"}


class Peer:
    """One end of an RPC conversation over ``channel``; see the module docstring.

    ``handlers`` is the registry to serve (shared or new); ``name`` is this
    side's name in ``ready``; ``timeout`` the default for ``request``/``ping``
    (a wait never lasts longer than some timeout); ``executor`` runs request
    handlers off the channel's delivery thread. ``session_started=True`` says
    this side must announce handler-list changes from the start; otherwise it
    does once it has called ``announce()`` or answered a ``hello`` (a socket
    server's connections leave this to the server's ``set_handler_names``).

    Usage::

        peer = Peer(channel, handlers=registry, name="maya-2025")
        peer.announce()                          # a packed backend, right after connecting
        peer.wait_ready(timeout=5.0) and peer.remote_handlers   # ['scene.info', ...]
        rtt = peer.ping()                        # seconds
        peer.close()                             # detach; pending requests fail with -32002
    """

    def __init__(
        self,
        channel: IpcChannel,
        handlers: Optional[HandlerRegistry] = None,
        *,
        name: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        executor: Optional[concurrent.futures.Executor] = None,
        session_started: bool = False,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.channel = channel
        self.registry = handlers if handlers is not None else HandlerRegistry()
        self.name = name or default_peer_name()
        self.timeout = timeout
        self.executor = executor
        self.remote_info: dict[str, Any] = {}
        """Data of the other side's latest ``ready`` (or ``hello``)."""
        self._lock = threading.Lock()
        self._pending: dict[str, _Call] = {}
        self._subscribers: _Subscribers[tuple[str, bool, EventHandler]] = _Subscribers()
        self._closed: Optional[str] = None  # why new requests fail with -32002
        self._session_started = session_started
        self._ready = threading.Event()
        self._ready_handlers: _Subscribers[Callable[[dict[str, Any]], None]] = _Subscribers()
        self._delivering = threading.local()  # .active: a handler runs inside delivery
        self._adopt_handshake(channel)
        self._unsubscribe_registry = self.registry.subscribe(self._registry_changed)
        self._unsubscribe_channel = channel.on_message(self._on_message)
        channel.shutdown_state.on_shutdown(self._on_channel_shutdown)

    def _adopt_handshake(self, channel: IpcChannel) -> None:
        # A socket channel keeps the handshake to itself: the hello/ready it
        # exchanged is in its ``peer_info``, and that ready is not delivered.
        info = channel.peer_info
        if info:
            self.remote_info = _without_token(info)
            if "handlers" in info:  # it was the other side's ready
                self._ready.set()

    # -- serving -----------------------------------------------------------

    def register(self, name: str, fn: F, *, raw: bool = False) -> F:
        """Serve requests for ``name`` with ``fn``; returns ``fn`` (``raw``: see the registry's)."""
        return self.registry.register(name, fn, raw=raw)

    def unregister(self, name: str) -> bool:
        return self.registry.unregister(name)

    def handler(self, name: Optional[str] = None, *, raw: bool = False) -> Callable[[F], F]:
        """Decorator: ``@peer.handler("scene.info")`` (name defaults to the function's)."""
        return self.registry.handler(name, raw=raw)

    def announce(self) -> None:
        """Send a ``ready`` with this side's handler list. Raises the channel's errors."""
        self._session_started = True
        self.channel.send(ready_message(self.name, self.registry.names()))

    def _registry_changed(self) -> None:
        if self._session_started and self._closed is None and not self.channel.is_shutdown():
            try:
                self.announce()
            except IpcChannelError as exc:
                log.warning("peer %r: could not announce handlers: %s", self.name, exc)

    # -- calling -----------------------------------------------------------

    def request(self, method: str, data: Any = None, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on the other side and return its result.

        ``timeout`` defaults to the peer's. Raises :class:`IpcCallError`.
        """
        return self._wait(method, data, timeout)

    def request_async(
        self, method: str, data: Any = None, timeout: Optional[float] = None
    ) -> concurrent.futures.Future[Any]:
        """Like ``request`` but returns at once with a ``concurrent.futures.Future``.

        The future fails with :class:`IpcCallError` like ``request`` (also
        -32001 once ``timeout`` passes). From asyncio:
        ``await asyncio.wrap_future(peer.request_async(...))``.
        """
        wait = self.timeout if timeout is None else timeout
        try:
            call, msg_id = self._start(method, data, use_future=True)
        except IpcCallError as exc:
            failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
            failed.set_exception(exc)
            return failed
        future = call.future
        assert future is not None
        if not future.done():
            expire = functools.partial(self._expire, msg_id, wait)
            _deadlines.call_at(time.monotonic() + wait, expire)
        return future

    def ping(self, timeout: Optional[float] = None) -> float:
        """Round-trip time to the other side, in seconds. Raises :class:`IpcCallError`."""
        rtt: float = self._wait(None, None, timeout)
        return rtt

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to the other side. Raises the channel's errors."""
        self.channel.emit(event, data)

    def _wait(self, method: Optional[str], data: Any, timeout: Optional[float]) -> Any:
        """Send a request (or a ping, ``method=None``) and wait for its outcome."""
        if self._waits_for_itself():
            raise RuntimeError(
                f"{method or 'ping'}: a blocking call on the thread that delivers this channel's"
                " messages would wait for its own reply; use request_async() or an executor"
            )
        wait = self.timeout if timeout is None else timeout
        call, msg_id = self._start(method, data, use_future=False)
        assert call.done is not None
        if not self.channel.wait_event(call.done, wait):
            self._expire(msg_id, wait)
        return call.outcome()

    def _waits_for_itself(self) -> bool:
        # An event loop (the Qt side) keeps delivering while it waits; elsewhere
        # the delivering thread would be stuck waiting for its own reply.
        return (
            getattr(self._delivering, "active", False) and not self.channel.delivers_while_waiting
        )

    def _start(self, method: Optional[str], data: Any, use_future: bool) -> tuple[_Call, str]:
        """Send a request (``method``) or a ping (``None``); register it as pending."""
        self._check_open(method)
        call = _Call(method, use_future)
        msg_id = new_message_id()
        if method is None:
            msg = IpcMessage.ping(msg_id)
        else:
            msg = IpcMessage.request(method, data, msg_id)
        with self._lock:
            self._pending[msg_id] = call
        try:
            self.channel.send(msg)
        except IpcChannelError as exc:
            with self._lock:
                self._pending.pop(msg_id, None)
            error = exc.to_ipc_error()
            raise IpcCallError.from_error(error, method) from exc
        if self._closed is not None:  # closed while sending: nobody else will fail it
            self._fail(msg_id, self._shutting_down_error(method))
        return call, msg_id

    def _check_open(self, method: Optional[str]) -> None:
        if self._closed is None and self.channel.is_shutdown():
            self._closed = "the channel is shut down"
        if self._closed is not None:
            raise self._shutting_down_error(method)

    def _shutting_down_error(self, method: Optional[str]) -> IpcCallError:
        reason = self._closed or "shutting down"
        return IpcCallError(ErrorCode.SHUTTING_DOWN, f"shutting down: {reason}", method=method)

    def _expire(self, msg_id: str, timeout: float) -> None:
        with self._lock:
            call = self._pending.pop(msg_id, None)
        if call is not None:
            self.channel.metrics.record_error()
            what = "ping" if call.method is None else "request"
            message = f"no reply to {what} within {timeout}s"
            call.settle(error=IpcCallError(ErrorCode.TIMEOUT, message, method=call.method))

    def _fail(self, msg_id: str, error: IpcCallError) -> None:
        with self._lock:
            call = self._pending.pop(msg_id, None)
        if call is not None:
            call.settle(error=error)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = reason
            calls, self._pending = self._pending, {}
        for call in calls.values():
            call.settle(error=self._shutting_down_error(call.method))

    @property
    def pending(self) -> int:
        """Requests and pings in flight."""
        return len(self._pending)

    # -- events and the other side -------------------------------------------

    def on(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event, data)`` for events matching ``pattern``; returns unsubscribe.

        ``pattern`` is an event name or an fnmatch-style pattern: ``*`` matches
        any run of characters, dots included (``"selection.*"``, ``"*"``).
        """
        return self._subscribers.add((pattern, any(c in pattern for c in "*?["), handler))

    @property
    def remote_handlers(self) -> list[str]:
        """Handler names from the other side's latest ``ready`` (empty before one)."""
        handlers = self.remote_info.get("handlers")
        return [h for h in handlers if isinstance(h, str)] if isinstance(handlers, list) else []

    def on_ready(self, handler: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``handler(info)`` for every ``ready`` from the other side; returns unsubscribe.

        ``info`` is its data (``peer``, ``handlers``, ...): the first announcement
        and every change of its handler list.
        """
        return self._ready_handlers.add(handler)

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the other side's ``ready``; True once one has arrived."""
        wait = self.timeout if timeout is None else timeout
        return self._ready.is_set() or self.channel.wait_event(self._ready, wait)

    # -- incoming ------------------------------------------------------------

    def _on_message(self, msg: IpcMessage) -> None:
        msg_type = msg.type
        if msg_type is _T.RESPONSE:
            self._on_response(msg)
        elif msg_type is _T.REQUEST:
            if self.executor is None:
                self._deliver(self._serve, msg)
            else:
                try:
                    self.executor.submit(self._serve, msg)
                except RuntimeError:  # the executor is shut down
                    self._reply_error(msg, ErrorCode.SHUTTING_DOWN, "shutting down")
        elif msg_type is _T.EVENT:
            self._deliver(self._on_event, msg)
        elif msg_type is _T.PING:
            self._send(IpcMessage.pong(msg.id))
        elif msg_type is _T.PONG:
            self._on_pong(msg)
        elif msg_type is _T.READY or msg_type is _T.HELLO:
            self.remote_info = _without_token(msg.data)
            if msg_type is _T.HELLO:  # an in-process client opening the session
                self._session_started = True
                self._send(ready_message(self.name, self.registry.names()))
            else:
                self._ready.set()
                self._deliver(self._on_ready, msg)
        elif msg_type is _T.BYE:
            self._fail_all("the other side said bye")

    def _deliver(self, run: Callable[[IpcMessage], None], msg: IpcMessage) -> None:
        """Run user code (a handler, subscribers) for ``msg`` on the delivering thread."""
        local = self._delivering
        local.active = True
        try:
            run(msg)
        finally:
            local.active = False

    def _on_ready(self, msg: IpcMessage) -> None:
        for handler in self._ready_handlers.items:
            try:
                handler(self.remote_info)
            except Exception:
                self.channel.metrics.record_error()
                log.exception("peer %r: ready handler %r raised", self.name, handler)

    def _on_response(self, msg: IpcMessage) -> None:
        msg_id = msg.id
        with self._lock:
            call = self._pending.pop(msg_id, None) if msg_id is not None else None
        if call is None or call.method is None:
            if msg.error is not None:
                self.channel.metrics.record_error()
                log.warning("peer %r: error from the other side: %r", self.name, msg.error)
            else:
                log.debug("peer %r: response to no pending request (%s)", self.name, msg_id)
            return
        self.channel.metrics.record_latency(_perf() - call.sent_at)
        if msg.error is not None:
            call.settle(error=IpcCallError.from_error(msg.error, call.method))
        else:
            call.settle(msg.data)

    def _on_pong(self, msg: IpcMessage) -> None:
        with self._lock:
            call = self._pending.get(msg.id) if msg.id is not None else None
            if call is None or call.method is not None:
                return
            del self._pending[msg.id]  # type: ignore[arg-type]
        rtt = _perf() - call.sent_at
        self.channel.metrics.record_latency(rtt)
        call.settle(rtt)

    def _on_event(self, msg: IpcMessage) -> None:
        event = msg.event or ""
        for pattern, wildcard, handler in self._subscribers.items:
            if pattern == event or (wildcard and fnmatch.fnmatchcase(event, pattern)):
                try:
                    handler(event, msg.data)
                except Exception:
                    self.channel.metrics.record_error()
                    log.exception("peer %r: event handler for %r raised", self.name, event)

    def _serve(self, msg: IpcMessage) -> None:
        """Run the handler for request ``msg`` and send its response."""
        method = msg.method or ""
        entry = self.registry._entry(method)
        if entry is None:
            self._reply_error(msg, ErrorCode.METHOD_NOT_FOUND, f"method not found: {method!r}")
            return
        args, kwargs = entry.arguments(msg.data)
        try:
            entry.check(args, kwargs)
        except TypeError as exc:
            message = f"invalid params for {method!r}: {exc}"
            self._reply_error(msg, ErrorCode.INVALID_PARAMS, message)
            return
        try:
            guard = self.channel.shutdown_state.begin_operation()
        except ShuttingDown:
            self._reply_error(msg, ErrorCode.SHUTTING_DOWN, "shutting down")
            return
        with guard:
            try:
                result = entry.fn(*args, **kwargs)
            except IpcCallError as exc:
                self._reply(msg, IpcMessage(_T.RESPONSE, id=msg.id, error=exc.error))
                return
            except Exception as exc:
                self.channel.metrics.record_error()
                log.warning("peer %r: handler %r raised", self.name, method, exc_info=True)
                details = {"type": type(exc).__name__, "traceback": traceback.format_exc()}
                self._reply_error(
                    msg,
                    ErrorCode.INTERNAL_ERROR,
                    f"{method} raised {type(exc).__name__}: {exc}",
                    details,
                )
                return
            self._reply(msg, IpcMessage.response(msg.id, result))

    def _reply_error(self, msg: IpcMessage, code: int, message: str, data: Any = None) -> None:
        self._reply(msg, IpcMessage.error_response(msg.id, code, message, data))

    def _reply(self, request: IpcMessage, response: IpcMessage) -> None:
        try:
            self.channel.send(response)
        except SerializationError as exc:  # a result that is not JSON
            self.channel.metrics.record_error()
            self._send(
                IpcMessage.error_response(
                    request.id, ErrorCode.INTERNAL_ERROR, f"{request.method}: bad result: {exc}"
                )
            )
        except IpcChannelError as exc:
            log.debug("peer %r: response to %r not sent: %s", self.name, request.method, exc)

    def _send(self, msg: IpcMessage) -> None:
        """Send what the protocol owes; a channel that is gone is not an error here."""
        try:
            self.channel.send(msg)
        except IpcChannelError as exc:
            log.debug("peer %r: %s not sent: %s", self.name, msg.type.value, exc)

    def _on_channel_shutdown(self) -> None:
        self._fail_all("the channel shut down")

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Detach from the channel; pending and later requests fail with -32002.

        The channel itself is left open (its owner closes it). Idempotent.
        """
        self._unsubscribe_channel()
        self._unsubscribe_registry()
        self._fail_all("the peer is closed")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"closed ({self._closed})" if self._closed else "open"
        return f"<Peer {self.name!r} on {self.channel.name!r} {state}, {self.pending} pending>"
