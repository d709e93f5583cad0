"""``DccIpcChannel``: run message handlers on the host application's main thread.

DCC APIs (``maya.cmds``, ``hou``, ``nuke``, ``pymxs``) may only be called from
the main thread. A ``DccIpcChannel`` is the one-ended inbox of that thread:
``send``/``emit`` from any thread (socket readers, workers) queue a message, and
every ``on_message`` handler runs on the main thread, in the host's event loop,
without freezing its UI. ``call_in_main_thread`` runs a function there and
hands its result (or exception) back to the calling thread.

Usage::

    channel = DccIpcChannel("scene")                  # once a QCoreApplication exists
    channel.on_message(lambda msg: cmds.select(msg.data["nodes"]))   # main thread
    # ... on any thread:
    channel.emit("select", {"nodes": ["pCube1"]})
    names = channel.call_in_main_thread(cmds.ls, "pCube*", timeout=5.0)

How delivery works: the channel holds a ``ThreadChannel`` (the queue) and a
:class:`Waker` (``QtWaker`` by default). The main thread is woken only by the
first message sent after a drain found the queue empty, and each wake drains
messages until the queue is empty or ``frame_budget`` (8 ms) is spent; then
it yields to the event loop and wakes itself again, so a flood never holds
the UI for more than a frame or so. With no handler registered, messages
stay queued for ``receive()``/``try_receive()``.

A channel created before the ``QCoreApplication`` exists queues what it is
sent and delivers it after ``attach()``; it never creates an application.
On ``aboutToQuit`` or ``shutdown()`` it stops accepting, fails waiting
``call_in_main_thread`` callers with ``ShuttingDown``, hands what is queued to
the handlers (up to ``shutdown_timeout``) and disconnects from Qt.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, NoReturn, Optional, TypeVar, Union

from ..channel.base import IpcChannel, Waitable
from ..channel.shutdown import ShutdownState
from ..channel.thread import ThreadChannel
from ..channel.waker import Waker
from ..errors import ChannelTimeout, SendFailed, ShuttingDown
from ..protocol.message import IpcMessage

__all__ = ["DccIpcChannel", "call_in_main_thread", "main_thread_channel"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_perf = time.perf_counter

# Messages taken from the queue per lock hold while draining.
_BATCH = 256

# While the main thread waits in wait_event, how often it services the host's
# own events when nothing arrives through the channel.
_WAIT_SLICE = 0.005


_this_thread = threading.local()


def _new_reply_lock() -> threading.Lock:
    """This thread's lock for awaiting main-thread calls: held, released by the main thread.

    One per thread, reused (a thread waits for one call at a time): a new lock
    per call costs more than the rest of the caller's side.
    """
    lock = _this_thread.reply_lock = threading.Lock()
    lock.acquire()
    return lock


class _MainThreadCall:
    """One ``call_in_main_thread`` request; the caller blocks on ``done`` (held until it ran)."""

    __slots__ = ("args", "cancelled", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        try:
            self.done: threading.Lock = _this_thread.reply_lock
        except AttributeError:
            self.done = _new_reply_lock()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.cancelled = False

    def run(self) -> None:
        """Run on the main thread; the caller gets the result or the exception."""
        if self.cancelled:
            return
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc
        self.done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.release()

    def time_out(self, timeout: Optional[float]) -> NoReturn:
        """The caller gave up waiting: drop the call if still queued, raise ``ChannelTimeout``."""
        self.cancelled = True
        # If it is running now, its release must not reach this thread's next call.
        del _this_thread.reply_lock
        raise ChannelTimeout(f"{self.fn!r} did not run on the main thread within {timeout}s")


class _PostedCall:
    """One ``post``: run on the main thread, nobody waits for it."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except Exception:  # nobody waits for it: logged, the drain goes on
            log.exception("%r, posted to the main thread, raised", self.fn)

    def fail(self, error: BaseException) -> None:
        log.debug("%r, posted to the main thread, not run: %s", self.fn, error)


class DccIpcChannel(IpcChannel):
    """A channel whose handlers run on the main thread (see the module docstring).

    ``send(msg)`` (any thread) puts ``msg`` in the queue feeding the main
    thread; it waits up to ``send_timeout`` when ``capacity`` messages are
    already queued, then raises ``SendFailed``. ``waker`` defaults to a
    ``QtWaker`` when a ``QCoreApplication`` exists; otherwise the channel waits
    for ``attach()``.

    Usage::

        channel = DccIpcChannel("scene")
        channel.on_message(lambda msg: hou.node(msg.data["path"]).cook())
        reader_thread_sends(channel.send)                # any thread
        channel.close()                                  # or at aboutToQuit
    """

    delivers_while_waiting = True  # wait_event on the main thread drains (see there)

    def __init__(
        self,
        name: str,
        capacity: int = 10_000,
        *,
        waker: Optional[Waker] = None,
        frame_budget: float = 0.008,
        shutdown_timeout: float = 2.0,
        send_timeout: Optional[float] = 10.0,
        shutdown_state: Optional[ShutdownState] = None,
    ) -> None:
        super().__init__(name, shutdown_state)
        self._queue = ThreadChannel(
            name, capacity, send_timeout=send_timeout, shutdown_state=self._state
        )
        self.metrics = self._queue.metrics
        self.frame_budget = frame_budget
        self.shutdown_timeout = shutdown_timeout
        self._waker: Optional[Waker] = None
        self._ready: deque[IpcMessage] = deque()  # taken from the queue, not yet dispatched
        self._calls: deque[Union[_MainThreadCall, _PostedCall]] = deque()
        self._main_waiting = 0  # wait_event calls in progress on the main thread
        self._arrived = threading.Event()  # set on wakes while _main_waiting
        self._finishing = False
        self._queue.set_wakeup(self._wake)
        self._state.on_shutdown(self._on_shutdown)
        if waker is None:
            waker = _qt_waker_if_app()
        if waker is not None:
            self.attach(waker)

    # -- attaching to the host ---------------------------------------------

    @property
    def is_attached(self) -> bool:
        return self._waker is not None

    def attach(self, waker: Optional[Waker] = None) -> None:
        """Start delivering on the main thread, through ``waker`` or a new ``QtWaker``.

        Raises ``RuntimeError`` when already attached, or when ``waker`` is None
        and no ``QCoreApplication`` exists yet.
        """
        if self._waker is not None:
            raise RuntimeError(f"channel {self._name!r} is already attached")
        if waker is None:
            waker = _qt_waker_if_app()
            if waker is None:
                raise RuntimeError(
                    f"channel {self._name!r}: no QCoreApplication exists yet; create it, "
                    "then call attach() (or pass a Waker)"
                )
        waker.bind(self._drain, self._on_host_quit)
        self._waker = waker
        self._wake()  # deliver anything queued before now

    # -- the channel interface ---------------------------------------------

    def send(self, msg: IpcMessage) -> None:
        """Queue ``msg`` for the main thread's handlers (any thread; see the class doc)."""
        self._queue.send(msg)

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        """The next queued message (for use without handlers)."""
        msg = self._take_ready()
        return msg if msg is not None else self._queue.receive(timeout)

    def try_receive(self) -> Optional[IpcMessage]:
        msg = self._take_ready()
        return msg if msg is not None else self._queue.try_receive()

    def _take_ready(self) -> Optional[IpcMessage]:
        """A message a drain took but did not dispatch (out of budget, handlers gone), if any."""
        if self._ready:
            try:
                return self._ready.popleft()
            except IndexError:
                pass
        return None

    def _queue_length(self) -> int:
        return len(self._ready) + self._queue.queue_length()

    def _message_handlers_changed(self) -> None:
        if self._message_handlers:
            self._wake()  # messages may be waiting for their first handler

    def call_in_main_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = 30.0, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the main thread and return its result (or raise).

        Runs inline when called on the main thread. Raises ``ChannelTimeout``
        after ``timeout`` seconds (the call is then dropped if it has not
        started), ``ShuttingDown`` when the channel or the application shuts
        down first, ``RuntimeError`` when the channel is not attached yet.
        ``timeout`` is this call's own; to pass a ``timeout`` argument to
        ``fn``, bind it first (``functools.partial(fn, timeout=...)``).
        """
        waker = self._attached_waker()
        if kwargs:  # bound here, so the call itself stays one function and its args
            fn = functools.partial(fn, **kwargs)
        if waker.on_main_thread():
            self._state.check()
            return fn(*args)
        # Kept short, the wake last: the main thread waits for the GIL on every line here.
        wait = -1 if timeout is None else max(0.0, timeout)
        call = _MainThreadCall(fn, args)
        calls = self._calls
        calls.append(call)
        if self._state.shutting_down:  # _fail_calls may have run before the append
            try:
                calls.remove(call)
            except ValueError:
                pass  # taken: run or failed, the wait below gets its outcome
            else:
                raise ShuttingDown("shutting down: call not run on the main thread")
        acquire = call.done.acquire
        self._wake()  # one per call: cheaper than finding out whether one is due
        if not acquire(timeout=wait):
            call.time_out(timeout)
        if call.error is not None:
            raise call.error
        result: T = call.result
        return result

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the main thread soon, in order with the other calls; any thread.

        Does not wait for ``fn``: what it raises is logged. A call still queued
        when the channel shuts down is dropped. Bounded like ``send``: with
        ``capacity`` calls waiting, another thread waits up to ``send_timeout``
        for room, then (the main thread at once) raises ``SendFailed``. Raises
        ``ShuttingDown`` once the channel shuts down, ``RuntimeError`` when it is
        not attached yet.
        """
        waker = self._attached_waker()
        self._state.check()
        calls = self._calls
        if len(calls) >= self._queue.capacity:
            self._wait_for_room(waker)
        calls.append(_PostedCall(fn, args))
        self._wake()

    def _wait_for_room(self, waker: Waker) -> None:
        """``post`` found ``capacity`` calls waiting: wait for the main thread to take some."""
        wait = 0.0 if waker.on_main_thread() else self._queue.send_timeout
        deadline = None if wait is None else time.monotonic() + wait
        while len(self._calls) >= self._queue.capacity:
            self._state.check()
            if deadline is not None and time.monotonic() >= deadline:
                raise SendFailed(
                    f"channel {self._name!r}: {len(self._calls)} calls wait for the main thread"
                )
            time.sleep(_WAIT_SLICE)  # rare: the main thread is far behind

    def on_main_thread(self) -> bool:
        """True when called on the main thread this channel delivers on (False unattached)."""
        waker = self._waker
        return waker is not None and waker.on_main_thread()

    def _attached_waker(self) -> Waker:
        waker = self._waker
        if waker is None:
            self._state.check()
            raise RuntimeError(
                f"channel {self._name!r} is not attached to a main thread yet: call attach() "
                "once the QCoreApplication exists"
            )
        return waker

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event``; on the main thread, keep delivering and pumping meanwhile.

        A plain wait on the main thread would deadlock when ``event`` is set by
        a handler (an RPC reply) and would freeze the host, so the main thread
        drains the channel and lets the host process its events (at least every
        5 ms) until ``event`` is set or ``timeout`` runs out.
        """
        waker = self._waker
        if waker is None or not waker.on_main_thread():
            return event.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._main_waiting += 1
        try:
            while not event.is_set():
                self._arrived.clear()
                self._drain()
                waker.process_events()
                if event.is_set():
                    break
                remaining = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not (self._message_handlers and self._queue_length()):
                    self._arrived.wait(min(remaining, _WAIT_SLICE))
            return True
        finally:
            self._main_waiting -= 1

    # -- delivery (main thread) ----------------------------------------------

    def _wake(self) -> None:
        """Any thread: ask the main thread to drain (the queue's wake-up callback)."""
        if self._main_waiting:
            self._arrived.set()
        waker = self._waker
        if waker is not None:
            waker.wake()  # last: the main thread may need the GIL from here on

    def _drain(self) -> None:
        """Main thread, on each wake: run calls, then dispatch until empty or out of budget.

        Messages are taken from the queue in batches into ``_ready`` and
        dispatched from there one by one, so a drain nested in a handler (a
        modal dialog, ``wait_event``) continues from the same place and order
        holds; the budget is checked between messages. A wake for calls only,
        or with nothing queued, returns at once: a worker released by a call
        needs the GIL back. After a handler the way out is kept short for the
        same reason (a thread may be waiting for that handler's reply).
        """
        calls = self._calls
        while calls:
            try:
                call = calls.popleft()  # atomic: _fail_calls may empty it meanwhile
            except IndexError:
                break
            call.run()
        handlers = self._message_handlers
        queue = self._queue
        if not handlers or not (
            self._ready or queue.queue_length() or not queue.wake_on_next_send()
        ):
            # No handler, or nothing queued (the next send wakes us): hand the GIL back at once.
            if self._state.shutting_down:
                self._finish()
            return
        state = self._state
        try:
            state.begin_unguarded()  # one per drain
        except ShuttingDown:
            self._finish()
            return
        ready = self._ready
        try:
            take = queue.try_receive_many
            idle = queue.wake_on_next_send
            dispatch = self._dispatch
            deadline = _perf() + self.frame_budget
            while handlers:
                if not ready:
                    batch = take(_BATCH)
                    if not batch:
                        if idle():
                            return  # the next send wakes us
                        continue
                    ready.extend(batch)
                try:
                    msg = ready.popleft()
                except IndexError:  # taken by a receive() on another thread
                    continue
                dispatch(msg)
                if _perf() >= deadline:
                    break
                if not ready and idle():
                    return  # the next send wakes us
            else:
                return  # the last handler left; messages wait for receive()
        finally:
            state.end_operation()
        if self._waker is not None:
            self._waker.resume()  # out of budget: let the host paint, then continue

    # -- shutdown --------------------------------------------------------------

    def _fail_calls(self) -> None:
        """After shutdown: every queued call fails (each is popped once: run or failed)."""
        calls = self._calls
        while calls:
            try:
                call = calls.popleft()
            except IndexError:  # the main thread's _drain took it
                break
            call.fail(ShuttingDown("shutting down: call not run on the main thread"))

    def _on_shutdown(self) -> None:
        """Any thread (a ShutdownState callback; the queue is already closed)."""
        self._fail_calls()
        waker = self._waker
        if waker is None:
            return
        if waker.on_main_thread():
            self._finish()
        else:
            waker.wake()  # the main thread finishes in _drain

    def _on_host_quit(self) -> None:
        """Main thread, on ``QCoreApplication.aboutToQuit``."""
        self.shutdown()
        self._finish()

    def _finish(self) -> None:
        """Main thread, after shutdown: deliver what is queued (bounded), then leave the host."""
        if self._finishing:
            return
        self._finishing = True
        self._fail_calls()
        handlers = self._message_handlers
        deadline = _perf() + self.shutdown_timeout
        while handlers and _perf() < deadline:
            msg = self.try_receive()
            if msg is None:
                break
            self._dispatch(msg)
        left = self._queue_length()
        if left and handlers:
            log.warning(
                "channel %r: %d message(s) not delivered within shutdown_timeout=%ss",
                self._name,
                left,
                self.shutdown_timeout,
            )
        if self._waker is not None:
            self._waker.close()


def _qt_waker_if_app() -> Optional[Waker]:
    """A ``QtWaker`` when Qt is importable and a ``QCoreApplication`` exists, else None."""
    try:
        from ..qt.compat import app_instance
        from ..qt.waker import QtWaker
    except ImportError:
        return None
    return QtWaker() if app_instance() is not None else None


_default_channel: Optional[DccIpcChannel] = None
_default_lock = threading.Lock()


def main_thread_channel() -> DccIpcChannel:
    """The process-wide channel behind :func:`call_in_main_thread`, made on first use.

    Raises ``RuntimeError`` while no ``QCoreApplication`` exists.
    """
    global _default_channel
    with _default_lock:
        if _default_channel is None:
            _default_channel = DccIpcChannel("main-thread")
        if not _default_channel.is_attached:
            _default_channel.attach()
        return _default_channel


def call_in_main_thread(
    fn: Callable[..., T], *args: Any, timeout: Optional[float] = 30.0, **kwargs: Any
) -> T:
    """Run ``fn(*args, **kwargs)`` on the Qt main thread and return its result (any thread).

    Usage::

        names = call_in_main_thread(cmds.ls, "pCube*", type="transform", timeout=5.0)

    ``timeout`` is the call's own. See :meth:`DccIpcChannel.call_in_main_thread`.
    """
    return main_thread_channel().call_in_main_thread(fn, *args, timeout=timeout, **kwargs)
