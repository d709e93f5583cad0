"""Requests in flight: :class:`PendingCall`, the event a blocking caller waits on, and timeouts.

A ``Peer`` keeps a ``PendingCall`` per request (or ping) it sent, by id, in
its :class:`PendingCalls`, which settles each exactly once: with the reply
(matched by id in ``on_response``), an error, a timeout or a shutdown.
Timeouts of ``request_async`` futures are fired by one shared
:class:`DeadlineTimer` thread.

Usage::

    call = PendingCall("scene.info", use_future=False)
    ...                                   # another thread: call.settle({"nodes": 42})
    call.done.wait(5.0) and call.outcome()   # {'nodes': 42}, or raises IpcCallError
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..errors import ErrorCode, IpcChannelError, peer_repr
from ..protocol.message import IpcMessage, new_message_id
from .call_error import IpcCallError

__all__ = ["DeadlineTimer", "OneShotEvent", "PendingCall", "PendingCalls", "deadline_timer"]

log = logging.getLogger(__name__)

_perf = time.perf_counter


class DeadlineTimer:
    """One daemon thread that runs callbacks at their deadlines (``request_async`` timeouts).

    Entries are not removed when a call finishes early: the callback finds
    nothing left to expire and returns.

    Usage::

        deadline_timer.call_at(time.monotonic() + 5.0, expire)   # the shared instance
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the timer thread at ``deadline`` (``time.monotonic()``)."""
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


deadline_timer = DeadlineTimer()
"""The timer every ``Peer`` shares."""


class OneShotEvent:
    """A one-shot ``threading.Event`` on a bare lock: set once, waited on any number of times.

    ``threading.Event`` is built on a Python-level ``Condition``: creating one,
    waiting on it and setting it each cost more than the rest of a request's
    bookkeeping; a lock does the same job in C.

    Usage::

        done = OneShotEvent()
        ...                       # another thread: done.set()
        done.wait(1.0)            # True once set
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


class PendingCall:
    """A request or ping in flight: settled once, with a result or an error.

    A blocking caller waits on ``done``; ``request_async`` gets ``future``
    instead (a sent request cannot be cancelled, so the future is running).

    Usage::

        call, msg_id = calls.start("scene.info", {}, use_future=False)
        call.done.wait(5.0)
        call.outcome()          # the result, or raises the IpcCallError
    """

    __slots__ = ("done", "error", "future", "method", "result", "sent_at")

    def __init__(self, method: Optional[str], use_future: bool) -> None:
        self.method = method  # None for a ping
        self.result: Any = None
        self.error: Optional[IpcCallError] = None
        self.future: Optional[concurrent.futures.Future[Any]] = None
        self.done: Optional[OneShotEvent] = None
        if use_future:
            self.future = concurrent.futures.Future()
            self.future.set_running_or_notify_cancel()
        else:
            self.done = OneShotEvent()
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


class PendingCalls:
    """The requests and pings one ``Peer`` has in flight, by id: where a reply meets its request.

    ``start`` sends a request (or a ping) and registers it; ``on_response`` /
    ``on_pong`` settle it with the reply; ``expire`` with -32001; ``fail_all``
    settles every one with -32002 and refuses new ones from then on
    (``closed_reason`` says why); ``refuse_new`` only refuses new ones.

    Usage::

        calls = PendingCalls(channel, name="tool")
        call, msg_id = calls.start("scene.info", {}, use_future=False)
        # the channel's reader: calls.on_response(msg) settles it
        if not channel.wait_event(call.done, 5.0):
            calls.expire(msg_id, 5.0)
        call.outcome()
    """

    def __init__(self, channel: IpcChannel, name: str) -> None:
        self.channel = channel
        self.name = name  # the peer's, for logs
        self.closed_reason: Optional[str] = None
        """Why new requests fail with -32002 (None while they are accepted)."""
        self._lock = threading.Lock()
        self._calls: dict[str, PendingCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def start(self, method: Optional[str], data: Any, use_future: bool) -> tuple[PendingCall, str]:
        """Send a request (``method``) or a ping (``None``); register it as pending.

        Raises :class:`IpcCallError`: -32002 once closed, the channel error's
        code when the message cannot be sent.
        """
        self.check_open(method)
        call = PendingCall(method, use_future)
        msg_id = new_message_id()
        if method is None:
            msg = IpcMessage.ping(msg_id)
        else:
            msg = IpcMessage.request(method, data, msg_id)
        with self._lock:
            self._calls[msg_id] = call
        try:
            self.channel.send(msg)
        except IpcChannelError as exc:
            with self._lock:
                self._calls.pop(msg_id, None)
            error = exc.to_ipc_error()
            raise IpcCallError.from_error(error, method) from exc
        if self.closed_reason is not None:  # closed while sending: nobody else will fail it
            self._fail(msg_id, self.shutting_down_error(method))
        return call, msg_id

    def check_open(self, method: Optional[str]) -> None:
        """Raise -32002 if new requests are refused (closed, or the channel shut down)."""
        if self.closed_reason is None and self.channel.is_shutdown():
            self.closed_reason = "the channel is shut down"
        if self.closed_reason is not None:
            raise self.shutting_down_error(method)

    def shutting_down_error(self, method: Optional[str]) -> IpcCallError:
        reason = self.closed_reason or "shutting down"
        return IpcCallError(ErrorCode.SHUTTING_DOWN, f"shutting down: {reason}", method=method)

    def expire(self, msg_id: str, timeout: float) -> None:
        """Fail call ``msg_id`` if it is still pending: -32001, or -32002 when the
        wait ended because the channel shut down (a close is not a timeout)."""
        with self._lock:
            call = self._calls.pop(msg_id, None)
        if call is None:
            return
        self.channel.metrics.record_error()
        if self.closed_reason is not None or self.channel.is_shutdown():
            call.settle(error=self.shutting_down_error(call.method))
            return
        what = "ping" if call.method is None else "request"
        message = f"no reply to {what} within {timeout}s"
        call.settle(error=IpcCallError(ErrorCode.TIMEOUT, message, method=call.method))

    def _fail(self, msg_id: str, error: IpcCallError) -> None:
        with self._lock:
            call = self._calls.pop(msg_id, None)
        if call is not None:
            call.settle(error=error)

    def refuse_new(self, reason: str) -> None:
        """Refuse new calls from now on (-32002, ``reason``); pending ones still wait for
        their replies (the other side said ``bye``: it answers what it accepted)."""
        with self._lock:
            if self.closed_reason is None:
                self.closed_reason = reason

    def fail_all(self, reason: str) -> None:
        """Refuse new calls from now on (``reason``) and fail every pending one with -32002."""
        with self._lock:
            if self.closed_reason is None:
                self.closed_reason = reason
            calls, self._calls = self._calls, {}
        for call in calls.values():
            call.settle(error=self.shutting_down_error(call.method))

    def on_response(self, msg: IpcMessage) -> None:
        """Settle the request ``msg`` answers; log an error response that answers none."""
        msg_id = msg.id
        with self._lock:
            call = self._calls.pop(msg_id, None) if msg_id is not None else None
        if call is None or call.method is None:
            if msg.error is not None and self.closed_reason is None:
                self.channel.metrics.record_error()
                log.warning(
                    "peer %r: error from the other side: %s", self.name, peer_repr(msg.error)
                )
            elif msg.error is not None:  # its call was failed by the close already
                log.debug(
                    "peer %r: error for a call the close failed: %s",
                    self.name,
                    peer_repr(msg.error),
                )
            else:
                log.debug(
                    "peer %r: response to no pending request (%s)", self.name, peer_repr(msg_id)
                )
            return
        self.channel.metrics.record_latency(_perf() - call.sent_at)
        if msg.error is not None:
            call.settle(error=IpcCallError.from_error(msg.error, call.method))
        else:
            call.settle(msg.data)

    def on_pong(self, msg: IpcMessage) -> None:
        """Settle the ping ``msg`` answers with its round-trip time."""
        with self._lock:
            call = self._calls.get(msg.id) if msg.id is not None else None
            if call is None or call.method is not None:
                return
            del self._calls[msg.id]  # type: ignore[arg-type]
        rtt = _perf() - call.sent_at
        self.channel.metrics.record_latency(rtt)
        call.settle(rtt)
