"""``Peer``: requests, responses and events (RPC) over any ``IpcChannel``.

A ``Peer`` subscribes to a channel with ``on_message`` and speaks the message
layer of docs/PROTOCOL.md on it: it answers requests with the handlers of a
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
  shuts down or this ``Peer`` is closed while the request is in flight (and
  at once for requests made after that, or after the peer sent ``bye``: a
  request sent before its ``bye`` still gets its answer, or -32002 at the close); the
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
import fnmatch
import functools
import logging
import threading
import time
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..errors import ErrorCode, IpcChannelError, peer_repr
from ..protocol.handshake import default_peer_name, ready_message
from ..protocol.message import IpcMessage, IpcMessageType
from .call_error import IpcCallError
from .pending import PendingCalls, deadline_timer
from .registry import F, HandlerRegistry, Subscribers
from .responder import Responder

__all__ = ["DEFAULT_TIMEOUT", "EventHandler", "F", "HandlerRegistry", "IpcCallError", "Peer"]

log = logging.getLogger(__name__)

EventHandler = Callable[[str, Any], None]
"""An event subscriber: ``handler(event_name, data)``."""
ReadyCallback = Callable[[dict[str, Any]], None]
"""Called with the other side's ``ready`` data: ``callback(info)``."""

DEFAULT_TIMEOUT = 30.0

# Message types bound once: ``_on_message`` compares every message against them.
_REQUEST = IpcMessageType.REQUEST
_RESPONSE = IpcMessageType.RESPONSE
_EVENT = IpcMessageType.EVENT
_PING = IpcMessageType.PING
_PONG = IpcMessageType.PONG
_READY = IpcMessageType.READY
_HELLO = IpcMessageType.HELLO
_BYE = IpcMessageType.BYE


def _without_token(data: Any) -> dict[str, Any]:
    """A hello's or ready's data to keep: a session token is not kept (nor logged)."""
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if key != "token"}


class Peer:
    """One end of an RPC conversation over ``channel``; see the module docstring.

    ``registry`` is the :class:`HandlerRegistry` to serve (shared, or a new
    one when omitted); ``name`` is this side's name in ``ready``; ``timeout``
    the default for ``request``/``ping``
    (a wait never lasts longer than some timeout); ``executor`` runs request
    handlers off the channel's delivery thread. ``session_started=True`` says
    this side must announce handler-list changes from the start; otherwise it
    does once it has called ``announce()`` or answered a ``hello`` (a socket
    server's connections leave this to the server's ``set_handler_names``).

    Usage::

        peer = Peer(channel, registry=registry, name="maya-2025")
        peer.announce()                          # a packed backend, right after connecting
        peer.wait_ready(timeout=5.0) and peer.remote_handler_names   # ['scene.info', ...]
        rtt = peer.ping()                        # seconds
        peer.close()                             # detach; pending requests fail with -32002
    """

    def __init__(
        self,
        channel: IpcChannel,
        registry: Optional[HandlerRegistry] = None,
        *,
        name: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        executor: Optional[concurrent.futures.Executor] = None,
        session_started: bool = False,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.channel = channel
        self.registry = registry if registry is not None else HandlerRegistry()
        self.name = name or default_peer_name()
        self.timeout = timeout
        self.executor = executor
        self.remote_info: dict[str, Any] = {}
        """Data of the other side's latest ``ready`` (or ``hello``)."""
        self._calls = PendingCalls(channel, self.name)
        self._on_response = self._calls.on_response
        responder = Responder(channel, self.registry, self.name)
        self._serve = responder.serve  # bound once: passed along with every request
        self._reply_error = responder.reply_error
        self._send = responder.send_owed
        self._subscribers: Subscribers[tuple[str, bool, EventHandler]] = Subscribers()
        self._session_started = session_started
        self._ready = threading.Event()
        self._ready_callbacks: Subscribers[ReadyCallback] = Subscribers()
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

    @property
    def session_started(self) -> bool:
        """True once this side has announced its handlers or answered a ``hello``."""
        return self._session_started

    def announce(self) -> None:
        """Send a ``ready`` with this side's handler list. Raises the channel's errors."""
        self._session_started = True
        self.channel.send(ready_message(self.name, self.registry.names()))

    def _registry_changed(self) -> None:
        if (
            self._session_started
            and self._calls.closed_reason is None
            and not self.channel.is_shutdown()
        ):
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
            call, msg_id = self._calls.start(method, data, use_future=True)
        except IpcCallError as exc:
            failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
            failed.set_exception(exc)
            return failed
        future = call.future
        assert future is not None
        if not future.done():
            expire = functools.partial(self._calls.expire, msg_id, wait)
            deadline_timer.call_at(time.monotonic() + wait, expire)
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
        call, msg_id = self._calls.start(method, data, use_future=False)
        assert call.done is not None
        if not self.channel.wait_event(call.done, wait):
            self._calls.expire(msg_id, wait)
        return call.outcome()

    def _waits_for_itself(self) -> bool:
        # An event loop (the Qt side) keeps delivering while it waits; elsewhere
        # the delivering thread would be stuck waiting for its own reply.
        return (
            getattr(self._delivering, "active", False) and not self.channel.delivers_while_waiting
        )

    @property
    def pending(self) -> int:
        """Requests and pings in flight."""
        return len(self._calls)

    # -- events and the other side -------------------------------------------

    def on(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event, data)`` for events matching ``pattern``; returns unsubscribe.

        ``pattern`` is an event name or an fnmatch-style pattern: ``*`` matches
        any run of characters, dots included (``"selection.*"``, ``"*"``).
        """
        return self._subscribers.add((pattern, any(c in pattern for c in "*?["), handler))

    @property
    def remote_handler_names(self) -> list[str]:
        """Handler names from the other side's latest ``ready`` (empty before one)."""
        names = self.remote_info.get("handlers")  # the wire field keeps its name
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    def on_ready(self, callback: ReadyCallback) -> Callable[[], None]:
        """Call ``callback(info)`` for every ``ready`` from the other side; returns unsubscribe.

        ``info`` is its data (``peer``, ``handlers``, ...): the first announcement
        and every change of its handler list.
        """
        return self._ready_callbacks.add(callback)

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the other side's ``ready``; True once one has arrived."""
        wait = self.timeout if timeout is None else timeout
        return self._ready.is_set() or self.channel.wait_event(self._ready, wait)

    # -- incoming ------------------------------------------------------------

    def _on_message(self, msg: IpcMessage) -> None:
        msg_type = msg.type
        if msg_type is _RESPONSE:
            self._on_response(msg)
        elif msg_type is _REQUEST:
            if self.executor is None:
                self._deliver(self._serve, msg)
            else:
                try:
                    self.executor.submit(self._serve, msg)
                except RuntimeError:  # the executor is shut down
                    self._reply_error(msg, ErrorCode.SHUTTING_DOWN, "shutting down")
        elif msg_type is _EVENT:
            self._deliver(self._on_event, msg)
        elif msg_type is _PING:
            self._send(IpcMessage.pong(msg.id))
        elif msg_type is _PONG:
            self._calls.on_pong(msg)
        elif msg_type is _READY or msg_type is _HELLO:
            self.remote_info = _without_token(msg.data)
            if msg_type is _HELLO:  # an in-process client opening the session
                self._session_started = True
                self._send(ready_message(self.name, self.registry.names()))
            else:
                self._ready.set()
                self._deliver(self._on_ready, msg)
        elif msg_type is _BYE:
            # Its answers to what it accepted still come; the close fails the rest.
            self._calls.refuse_new("the other side said bye")

    def _deliver(self, run: Callable[[IpcMessage], None], msg: IpcMessage) -> None:
        """Run user code (a handler, subscribers) for ``msg`` on the delivering thread."""
        local = self._delivering
        local.active = True
        try:
            run(msg)
        finally:
            local.active = False

    def _on_ready(self, msg: IpcMessage) -> None:
        for callback in self._ready_callbacks.items:
            try:
                callback(self.remote_info)
            except Exception:
                self.channel.metrics.record_error()
                log.exception("peer %r: ready callback %r raised", self.name, callback)

    def _on_event(self, msg: IpcMessage) -> None:
        event = msg.event or ""
        for pattern, wildcard, handler in self._subscribers.items:
            if pattern == event or (wildcard and fnmatch.fnmatchcase(event, pattern)):
                try:
                    handler(event, msg.data)
                except Exception:
                    self.channel.metrics.record_error()
                    log.exception(
                        "peer %r: event handler for %s raised", self.name, peer_repr(event)
                    )

    def _on_channel_shutdown(self) -> None:
        self._calls.fail_all("the channel shut down")

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Detach from the channel; pending and later requests fail with -32002.

        The channel itself is left open (its owner closes it). Idempotent.
        """
        self._unsubscribe_channel()
        self._unsubscribe_registry()
        self._calls.fail_all("the peer is closed")

    @property
    def closed(self) -> bool:
        return self._calls.closed_reason is not None

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        reason = self._calls.closed_reason
        state = f"closed ({reason})" if reason else "open"
        return f"<Peer {self.name!r} on {self.channel.name!r} {state}, {self.pending} pending>"
