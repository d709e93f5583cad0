"""Local-socket channels in pure Python: ``LocalSocketChannelServer`` and ``LocalSocketChannel``.

The side of PROTOCOL.md for processes without Qt (a packed-mode backend, a
subprocess script, an external tool). Unix domain sockets on Linux and macOS,
named pipes on Windows (:mod:`aurora_dcc.transport.win_pipe`), behind one API. The
protocol rules themselves live in :class:`~aurora_dcc.transport.connection.StreamSession`;
this module only moves bytes and threads.

Each channel owns one socket. One thread at a time holds its *read turn*:
it reads a big chunk, feeds the session, writes the replies the protocol
owes (``pong``, ``ready``, error responses) and hands the messages over:
straight to the ``on_message`` handlers when any are registered, else into an
inbox for ``receive()``/``try_receive()``. Who reads:

* a server-side connection (and a channel over pipes) has a daemon reader
  thread for its whole life, so it answers pings and bad frames and notices a
  hang-up even while the application reads nothing;
* a client reads on demand. Without handlers, ``receive()`` reads the socket on
  the calling thread (no hand-off between threads, and a short poll before it
  sleeps, see ``READ_SPIN``: a round trip's fast path);
  a second caller waits for the first one's read, then takes what it queued or
  reads in turn. While handlers are registered a reader thread delivers to
  them; once none is left it stops (within a second, or at once if a read
  brings something: it queues that first). So a client without handlers
  answers a ``ping``, and notices that the server left, only when it reads (or
  a send fails). ``Peer`` registers a handler, so it always has its reader
  thread; but the reader waits for data without holding the read turn, and a
  caller waiting for a reply in ``wait_event`` (``Peer.request``) takes the
  turn and reads for itself: the reply is delivered on the thread that waits
  for it.

Writes (``send``, ``send_many`` for batches) go out under a lock, from
whichever thread calls them.

A handler runs on the thread that read its message (the reader thread, a
``wait_event`` caller, or a ``receive()`` caller when the handler was
registered during its read), so while it runs nothing else is read from that
connection: a handler must not wait for a reply on its own channel (hand such
work to an executor), and a
handler that sends much to a peer that is itself blocked sending to us waits
at most ``send_timeout`` (then ``SendFailed`` and the connection is closed;
part of a frame may be out).

Usage::

    with LocalSocketChannelServer("auroraview_4711", token="s3cret") as server:
        client = LocalSocketChannel.connect("auroraview_4711", token="s3cret")
        conn = server.accept(timeout=5.0)
        client.emit("scene.opened", {"path": "shot.ma"})
        conn.receive(timeout=1.0).event          # 'scene.opened'
        server.emit("selection.changed", {})     # to every client
        client.close()                           # conn.receive() -> Disconnected
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

from ..channel.base import IpcChannel, Waitable
from ..channel.metrics import IpcChannelMetrics
from ..channel.server import ConnectionHandler, IpcServer
from ..channel.shutdown import ShutdownState
from ..errors import (
    ChannelTimeout,
    Disconnected,
    IpcChannelError,
    SendFailed,
    ShuttingDown,
)
from ..protocol.framing import DEFAULT_MAX_FRAME, encode_event, encode_frame
from ..protocol.handshake import ready_message
from ..protocol.message import IpcMessage, IpcMessageType
from .address import MAX_UNIX_PATH, AddressInUse, claim_address, is_windows, resolve_address
from .connection import StreamSession
from .retry import RetryPolicy, retrying

__all__ = ["LocalSocketChannel", "LocalSocketChannelServer", "RetryPolicy", "Stream"]

log = logging.getLogger(__name__)

RECV_CHUNK = 256 * 1024
"""Bytes asked of each ``recv``: many frames per read at high rates."""
_BATCH_BYTES = 32 * 1024
"""Inside ``batch()``, held sends are written once they reach this many bytes."""
READ_SPIN = 100e-6
"""Seconds a caller that reads for itself (``receive()``, ``wait_event``) polls its
socket before it sleeps in the kernel (0: never poll).

A reply to a request often arrives within tens of microseconds. A thread that
sleeps for it in the kernel pays for its core going idle and being woken again:
on the 2-core CI machine, 15-20 us of a 44 us round trip. Polling holds the GIL
between system calls, so a thread of this process that wants to run can wait up
to this long: the channel polls only when its peer is another process (a thread
of this one may be the very one about to answer), on a machine with more than
one core, and never on its reader thread. Linux only (``SO_PEERCRED`` tells the
peer's process); elsewhere it never polls. Set it before connecting.
"""

# Linux: never raise SIGPIPE on a write to a dead peer (a DCC's embedded Python
# may not ignore SIGPIPE the way python.exe does). macOS has SO_NOSIGPIPE instead.
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)
_SO_NOSIGPIPE = 0x1022
_perf = time.perf_counter
_IDLE_CHECK_MS = 1000
"""A client's reader thread, waiting for data, looks this often whether it should stop."""
_WAIT_SLICE = 0.05
"""A caller reading while it waits for an event looks at the event at least this often
(the event may be set by a thread that does not read: a timeout, ``Peer.close``)."""

_T = TypeVar("_T")
_EVENT = IpcMessageType.EVENT
_READY = IpcMessageType.READY


class Stream(Protocol):
    """What a channel needs of its connection: a ``socket.socket`` or a named pipe."""

    def recv(self, bufsize: int) -> bytes: ...

    def sendall(self, data: bytes, flags: int = ..., /) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...


class _Inbox:
    """Messages read but not yet received, and the turn to read the stream.

    Everything is guarded by ``lock`` (``cond``'s lock: sections that do not wait
    take the bare lock, which is cheaper). ``reading`` is the *read turn*: true while
    one thread (the reader thread, or a ``receive()`` caller reading for itself)
    reads the stream, so reads never interleave and the stream is never closed
    under a reader. ``waiting`` counts the threads blocked on ``cond``, so a change
    wakes them only when somebody waits (``notify`` costs even with no waiter).

    The reader thread queues at most ``capacity`` messages (``wait_for_room``): a
    consumer that falls behind slows the sender down (the socket buffers fill)
    instead of growing memory without bound. A caller reading for itself reads
    only when the inbox is empty, so it queues at most the rest of one read.
    """

    def __init__(self, capacity: int, metrics: IpcChannelMetrics) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.metrics = metrics
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.messages: deque[IpcMessage] = deque()
        self.reading = False
        self.waiting = 0
        self.closed = False
        self.reason = "channel closed"
        self._room_wanted = False

    def __len__(self) -> int:
        return len(self.messages)

    # The methods below are called with ``lock`` held.

    def wait(self, timeout: Optional[float]) -> None:
        self.waiting += 1
        try:
            self.cond.wait(timeout)
        finally:
            self.waiting -= 1

    def wake(self) -> None:
        if self.waiting:
            self.cond.notify_all()

    def put_all(self, messages: list[IpcMessage]) -> None:
        if self.closed or not messages:
            return  # closed here: nobody is going to receive them
        self.messages.extend(messages)
        self.metrics.observe_queue_length(len(self.messages))
        self.wake()

    def pop(self) -> IpcMessage:
        msg = self.messages.popleft()
        if self._room_wanted:
            self.wake()
        return msg

    # The methods below take ``lock`` themselves.

    def take_all(self) -> list[IpcMessage]:
        with self.lock:
            taken = list(self.messages)
            self.messages.clear()
            if self._room_wanted:
                self.wake()
        return taken

    def wait_for_room(self, stop: Callable[[], bool]) -> bool:
        """Reader thread: wait while the inbox is full; False if ``stop()`` became true."""
        if len(self.messages) < self.capacity:
            return True
        with self.cond:
            self._room_wanted = True
            try:
                while len(self.messages) >= self.capacity and not self.closed:
                    if stop():
                        return False
                    self.wait(0.05)  # looks at stop() again: a handler registered meanwhile
            finally:
                self._room_wanted = False
        return True

    def close(self, reason: str) -> None:
        """Wake every receiver with ``Disconnected`` once the waiting messages are taken."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.reason = reason
            self.wake()


class LocalSocketChannel(IpcChannel):
    """One end of a local-socket connection (see the module docstring).

    Clients get one from :meth:`connect`, servers from
    ``LocalSocketChannelServer.accept`` or ``on_connection``; the constructor
    is internal. ``close()`` on either end wakes a blocked ``receive`` on both
    ends with ``Disconnected``. Messages that arrived before the first
    ``on_message`` handler is registered are handed to it at registration
    (on the registering thread), then delivery continues on the reader thread.
    When the connection ends, either way, the channel's ``shutdown_state`` is
    shut down, so whoever watches it (``Peer``) learns at once; a client without
    handlers learns it when it next reads or sends (see the module docstring).
    After the peer left, ``send`` raises ``Disconnected``; after a local close,
    ``ShuttingDown``.

    Usage::

        channel = LocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
        channel.send(IpcMessage.request("scene.info"))
        reply = channel.receive(timeout=5.0)     # read on this thread
        channel.on_message(print)                # from now on, on the reader thread
    """

    def __init__(
        self,
        stream: Stream,
        name: str,
        *,
        server: bool,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        shutdown_state: Optional[ShutdownState] = None,
        on_listed: Optional[Callable[[LocalSocketChannel], None]] = None,
        on_established: Optional[Callable[[LocalSocketChannel], None]] = None,
        on_closed: Optional[Callable[[LocalSocketChannel], None]] = None,
    ) -> None:
        super().__init__(name, shutdown_state)
        self._stream = stream
        self._session = StreamSession(
            server=server,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            list_handler_names=list_handler_names,
            metrics=self.metrics,
        )
        self._inbox = _Inbox(capacity, self.metrics)
        self._write_lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._batching: Optional[int] = None  # the thread inside batch(), whose writes are held
        self._held: list[bytes] = []
        self._held_count = 0
        self._held_bytes = 0
        self._delivering = threading.RLock()  # a handler may register another handler
        self._established = threading.Event()
        self._ended = threading.Event()
        self._settled = threading.Event()  # established or ended: what connect() waits for
        self._open = False  # the session is open (a bool: cheaper than Event.is_set per read)
        self._closing = False
        self._closed_locally = False
        self._ending = False  # the end is decided (under the inbox's lock): _end runs once
        self._on_listed = on_listed
        self._on_established = on_established
        self._on_closed = on_closed
        self._reader: Optional[threading.Thread] = None
        self._reader_running = False  # under the inbox's lock
        self._recv = _chunk_reader(stream)
        self._spin = READ_SPIN if _may_spin(stream) else 0.0  # see READ_SPIN
        # A client socket reads on demand (module docstring); any other channel has a
        # reader thread from _start_reader() on.
        self._reads_on_demand = not server and isinstance(stream, socket.socket)
        # A client's reader thread waits for data without the read turn, so that a
        # wait_event() caller can read for itself meanwhile (see wait_event).
        self._waits_without_turn = self._reads_on_demand and hasattr(select, "poll")
        # .active: this thread reads already (the reader thread, or a wait_event caller
        # holding the turn); its wait_event must not wait for a turn it holds itself.
        self._reading_here = threading.local()
        if send_timeout is not None and isinstance(stream, socket.socket):
            _set_send_timeout(stream, send_timeout)
        self._state.on_shutdown(self._on_shutdown)

    # -- opening -----------------------------------------------------------

    @classmethod
    def connect(
        cls,
        name: str,
        token: Optional[str] = None,
        timeout: float = 5.0,
        retry: Union[RetryPolicy, int, None] = None,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
    ) -> LocalSocketChannel:
        """Connect to the server of channel ``name`` and open the session.

        Sends ``hello`` (with ``token``) and waits up to ``timeout`` seconds for
        the server's ``ready``. Raises ``Unauthorized`` / ``UnsupportedProtocol``
        when the server refuses, ``ChannelTimeout`` when it does not answer, and
        ``Disconnected`` when nobody serves ``name`` (after the attempts of
        ``retry``: a :class:`RetryPolicy`, a number of attempts, or ``None`` for one).
        """
        address = resolve_address(name)
        return retrying(
            retry,
            lambda: cls._connect_once(
                name,
                address,
                token,
                timeout,
                max_frame=max_frame,
                peer_name=peer_name,
                capacity=capacity,
                send_timeout=send_timeout,
            ),
            name,
        )

    @classmethod
    def _connect_once(
        cls,
        name: str,
        address: str,
        token: Optional[str],
        timeout: float,
        **options: Any,
    ) -> LocalSocketChannel:
        stream = _open_stream(address, timeout)
        channel = cls(stream, name, server=False, token=token, **options)
        channel._session.start()
        try:
            channel._write_output()
            if not channel._wait_settled(timeout):
                raise ChannelTimeout(f"no ready from the server of {name!r} within {timeout}s")
            if channel._session.refusal is not None:
                raise channel._session.refusal_exception()
            if not channel._session.established:
                raise Disconnected(f"the server of {name!r} closed the connection during hello")
        except BaseException:
            channel.close()
            raise
        return channel

    def _wait_settled(self, timeout: float) -> bool:
        """Wait until the session opened or the connection ended; False after ``timeout``."""
        if not self._reads_on_demand:
            self._start_reader()
            return self._settled.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self._settled.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._inbox.lock:  # nobody else can read yet: the turn is free
                self._inbox.reading = True
            self._read_turn(remaining)  # what arrives with the ready waits in the inbox
        return True

    def _start_reader(self) -> None:
        """Start the reader thread (for good, unless this channel reads on demand)."""
        with self._inbox.lock:
            if self._reader_running or self._inbox.closed:
                return
            self._reader_running = True
        self._reader = threading.Thread(
            target=self._read_loop, name=f"aurora-read-{self._name}", daemon=True
        )
        self._reader.start()

    # -- sending -----------------------------------------------------------

    def send(self, msg: IpcMessage) -> None:
        """Send ``msg``. Raises ``MessageTooLarge``, ``ShuttingDown``, ``Disconnected``,
        ``SendFailed`` (the peer did not read for ``send_timeout`` seconds)."""
        self._write(encode_frame(msg, self._session.max_frame), 1)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an ``event`` message named ``event`` (as ``send`` does)."""
        self._write(encode_event(event, data, self._session.max_frame), 1)

    def send_many(self, messages: list[IpcMessage]) -> None:
        """Send several messages with one write (the fast way to stream events).

        Nothing is sent if one of them is over the frame limit (``MessageTooLarge``).
        """
        if not messages:
            return
        max_frame = self._session.max_frame
        frames = [encode_frame(msg, max_frame) for msg in messages]  # raises before any write
        self._write(b"".join(frames), len(messages))

    def announce(self, handler_names: list[str]) -> None:
        """Send a ``ready`` listing ``handler_names`` (this side's handler list changed)."""
        self.send(ready_message(self._session.peer_name, handler_names))

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Hold this thread's sends and write them together (see ``IpcChannel.batch``)."""
        return self._batch(skip_if_gone=False)

    @contextlib.contextmanager
    def _batch(self, skip_if_gone: bool) -> Iterator[None]:
        # One thread batches at a time. Nested blocks, and blocks of other threads
        # meanwhile, hold nothing (never wait: the batching thread may be waiting
        # for one of them).
        if not self._batch_lock.acquire(blocking=False):
            yield
            return
        try:
            self._batching = threading.get_ident()
            try:
                yield
            finally:
                self._batching = None
                try:
                    self._write_held()
                except IpcChannelError as exc:
                    if not skip_if_gone:
                        raise
                    log.debug("channel %r: batch not sent: %s", self._name, exc)
        finally:
            self._batch_lock.release()

    def _write_held(self) -> None:
        held, self._held = self._held, []
        count, self._held_count = self._held_count, 0
        self._held_bytes = 0
        if held:
            self._check_open()
            self._write_now(b"".join(held), count)

    def _check_open(self) -> None:
        if self._closing:
            if self._closed_locally:
                raise ShuttingDown(f"channel {self._name!r} is closed: message not sent")
            raise Disconnected(f"channel {self._name!r}: the connection is closed")

    def _write(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` frames), or hold it inside this thread's ``batch()``."""
        if self._closing:
            self._check_open()
        if self._batching is not None and self._batching == threading.get_ident():
            self._held.append(data)
            self._held_count += count
            self._held_bytes += len(data)
            if self._held_bytes >= _BATCH_BYTES:
                self._write_held()
            return
        self._write_now(data, count)

    def _write_now(self, data: bytes, count: int) -> None:
        with self._write_lock:
            self._send_locked(data, count)

    def _send_locked(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` frames) with ``_write_lock`` held."""
        try:
            self._stream.sendall(data, _SEND_FLAGS)
        except (BlockingIOError, socket.timeout) as exc:
            # Part of a frame may be on the wire: the stream is unusable now.
            self._close_stream()
            raise SendFailed(
                f"channel {self._name!r}: the peer read nothing for the send timeout"
            ) from exc
        except OSError as exc:
            self._close_stream()
            raise Disconnected(f"channel {self._name!r}: the peer is gone ({exc})") from exc
        metrics = self.metrics
        metrics.messages_sent += count
        metrics.bytes_sent += len(data)

    # -- receiving ---------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        msg = self._next_message(timeout)
        if msg is None:
            raise ChannelTimeout(f"no message within {timeout}s")
        return msg

    def try_receive(self) -> Optional[IpcMessage]:
        return self._next_message(0.0)

    def _next_message(self, timeout: Optional[float]) -> Optional[IpcMessage]:
        """The next message, or ``None`` once ``timeout`` passed (0: only what is there now).

        From the inbox if one waits there; else, when the read turn is free and
        no reader thread runs, read the stream on this thread (leader/follower:
        a second caller waits until the first one's read, then takes what it
        queued or reads in turn).
        """
        inbox = self._inbox
        start = time.monotonic()
        with inbox.lock:  # the common case first: a message waits, or this thread reads
            if inbox.messages:
                return inbox.pop()
            read_now = not (inbox.reading or self._reader_running or inbox.closed)
            if read_now:
                inbox.reading = True
        if read_now:
            msg = self._read_for_caller(timeout)
            if msg is not None or timeout == 0.0:
                return msg
        deadline = None if timeout is None else start + timeout
        remaining = timeout
        have_read = read_now
        while True:
            with inbox.lock:
                while True:
                    if inbox.messages:
                        return inbox.pop()
                    if inbox.closed:
                        raise Disconnected(inbox.reason)
                    can_read = not inbox.reading and not self._reader_running
                    if can_read and not have_read:
                        break  # the first read waits the whole timeout
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                    if can_read:
                        break
                    inbox.wait(remaining)  # the reader queues, gives up its turn, or ends
                inbox.reading = True  # this thread reads
            have_read = True
            msg = self._read_for_caller(remaining)
            if msg is not None:
                return msg

    def _read_for_caller(self, wait: Optional[float]) -> Optional[IpcMessage]:
        """``_next_message``'s read turn: read once, keep the first message, queue the rest.

        The common case (no handler, the connection goes on) takes the inbox's
        lock once; the others end the turn as ``_read_turn`` does.
        """
        messages, end = self._read_chunk(wait, self._spin)
        inbox = self._inbox
        with inbox.lock:
            # The inbox was empty when this thread took the turn, and only the turn's
            # holder queues. A handler registered meanwhile takes what is queued
            # under this lock (_message_handlers_changed), so it cannot miss these.
            if end is None and not self._closing and not (messages and self._message_handlers):
                inbox.reading = False
                inbox.wake()
                if not messages:
                    return None
                if len(messages) > 1:
                    inbox.put_all(messages[1:])
                return messages[0]
        self._end_turn(messages, end)
        return None

    def _queue_length(self) -> int:
        return len(self._inbox)

    def _message_handlers_changed(self) -> None:
        if not self._message_handlers:
            return
        # Hand over what arrived before this handler, before the reader delivers more.
        with self._delivering:
            for msg in self._inbox.take_all():
                self._dispatch(msg)
        if self._reads_on_demand:
            self._start_reader()  # delivers from now on, while handlers are registered

    def _read_loop(self) -> None:
        """The reader thread: takes the read turn for each read, and gives it back after.

        A client's reader waits for data without the turn (``poll``), so that a
        ``wait_event`` caller may read meanwhile; then it takes the turn and reads
        what is there, if that caller has not. Elsewhere it waits in the read,
        turn held: nobody else reads a server connection or a pipe.
        """
        inbox = self._inbox
        self._reading_here.active = True  # for good: this thread is the reader
        poller = None
        if self._waits_without_turn and isinstance(self._stream, socket.socket):
            poller = select.poll()
            poller.register(self._stream, select.POLLIN)
        while True:
            # Data, the end of the stream or an error; or, after a while without,
            # a look at whether to stop (the handlers are gone, the channel closed).
            readable = poller is None or bool(poller.poll(_IDLE_CHECK_MS))
            with inbox.lock:
                while inbox.reading and not inbox.closed:  # a caller is reading
                    inbox.wait(None)
                # Under the lock: a handler may be registering right now.
                stop = inbox.closed or (self._reads_on_demand and not self._message_handlers)
                if stop:
                    self._reader_running = False  # receive() callers read for themselves now
                    inbox.wake()
                    return
                if not readable:
                    continue
                inbox.reading = True
            messages, end = self._read_chunk(None if poller is None else 0.0)
            if messages:
                self._hand_over(messages, by_reader=True)
            self._give_back_turn(end)
            if end is not None:
                return

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event``, reading the socket on this thread meanwhile.

        On a client, a waiting caller reads whenever the read turn is free (its
        reader thread holds the turn only while it reads): the reply (a
        ``Peer`` request's, say) is read and delivered to the handlers on the
        thread that waits for it, without a hand-off between threads, and with
        the poll of ``READ_SPIN``. Whatever else arrives meanwhile goes to the
        handlers too, in order. Without handlers (nothing read could set
        ``event``: what is read waits for ``receive()``), on a server connection,
        on the thread that reads already (a handler), or without ``select.poll``,
        this is a plain wait.
        """
        if event.is_set():
            return True
        here = self._reading_here
        if not self._waits_without_turn or getattr(here, "active", False):
            return event.wait(timeout)
        inbox = self._inbox
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _WAIT_SLICE
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return event.is_set()
            with inbox.lock:
                if inbox.reading and not event.is_set() and not inbox.closed:
                    inbox.wait(wait)  # until the reader or another caller gives the turn back
                if event.is_set() or inbox.closed:
                    return event.is_set()
                if not self._message_handlers:  # reading would only fill the inbox
                    break
                if inbox.reading:
                    continue
                inbox.reading = True
            here.active = True
            try:
                messages, end = self._read_chunk(wait, self._spin)
                self._end_turn(messages, end)  # delivers on this thread, wakes the others
            finally:
                here.active = False
            if event.is_set():
                return True
        return event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _read_turn(self, wait: float) -> None:
        """With the read turn held: read once (waiting at most ``wait`` seconds for
        data), then end the turn."""
        messages, end = self._read_chunk(wait)
        self._end_turn(messages, end)

    def _end_turn(self, messages: list[IpcMessage], end: Optional[str]) -> None:
        """A read turn held by a caller, not the reader thread: hand over what it read,
        give the turn back."""
        if messages:
            self._hand_over(messages, by_reader=False)
        self._give_back_turn(end)

    def _give_back_turn(self, end: Optional[str]) -> None:
        """Let others read; or, if the connection ends, keep the turn (nothing reads a
        closed stream) and end it."""
        inbox = self._inbox
        with inbox.lock:
            if end is None and self._closing:
                end = "closed by this side"  # its shutdown() woke this read
            if end is None:
                inbox.reading = False
                inbox.wake()
                return
            self._ending = True
        self._end(end)

    def _hand_over(self, messages: list[IpcMessage], by_reader: bool) -> None:
        """To the handlers if any are registered, else into the inbox."""
        inbox = self._inbox
        if not by_reader:
            # A receive() caller took the turn with the inbox empty: no room to wait
            # for. And the lock alone keeps a handler being registered from missing
            # these: _message_handlers_changed takes the queued messages under it.
            with inbox.lock:
                if not self._message_handlers:
                    inbox.put_all(messages)
                    return
        # Under _delivering, so a handler being registered (which takes the messages
        # already queued) and this delivery cannot cross: nothing is left behind.
        with self._delivering:
            messages = self._deliver(messages)
            while messages and by_reader and not inbox.wait_for_room(self._has_message_handlers):
                messages = self._deliver(messages)
            if messages:
                with inbox.lock:
                    inbox.put_all(messages)

    def _read_chunk(
        self, wait: Optional[float], spin: float = 0.0
    ) -> tuple[list[IpcMessage], Optional[str]]:
        """Read and decode one chunk: its messages, and why the connection ends, if it does.

        ``spin``: poll this long before sleeping for data (see ``READ_SPIN``)."""
        try:
            data = self._recv(wait, spin)
        except (socket.timeout, TimeoutError):
            return [], "no hello within the handshake timeout"
        except OSError as exc:
            return [], f"connection lost: {exc}"
        if data is None:
            return [], None  # nothing within ``wait``
        if not data:
            return [], "the peer closed the connection"
        session = self._session
        try:
            messages = session.feed(data)
            if not self._open and session.established:
                self._session_opened(messages)
            elif session.output:
                self._write_output()
        except IpcChannelError as exc:  # a reply could not be written: the peer is gone
            return [], str(exc)
        except Exception:
            log.exception("channel %r: reading failed", self._name)
            return [], "reading failed"
        if session.must_close:
            return messages, "session refused or frame too large"
        return messages, None

    def _write_output(self) -> None:
        """Write what the protocol owes the peer (a ready, a pong, error replies)."""
        output = self._session.take_output()
        if output:
            self._write(output, output.count(b"\n"))

    def _session_opened(self, messages: list[IpcMessage]) -> None:
        with self._write_lock:
            # A server lists the connection for its broadcasts before the ready
            # goes out, and a broadcast to it waits for this lock: a client whose
            # connect() returned gets every later broadcast, and the ready first.
            if self._on_listed is not None:
                self._on_listed(self)
            output = self._session.take_output()
            if output:
                self._send_locked(output, output.count(b"\n"))
        if not self._session.server:
            # The ready that opened the session is connect()'s answer, not a message
            # for the application (its data is in peer_info); later readys are delivered.
            for index, msg in enumerate(messages):
                if msg.type is _READY:
                    del messages[index]
                    break
        if isinstance(self._stream, socket.socket) and self._stream.gettimeout() is not None:
            self._stream.settimeout(None)  # the handshake timeout is over
        self._open = True
        self._established.set()
        self._settled.set()
        if self._on_established is not None:
            self._on_established(self)

    def _deliver(self, messages: list[IpcMessage]) -> list[IpcMessage]:
        """To the handlers, in order (under ``_delivering``); returns what no handler took."""
        if self._message_handlers and self._inbox.messages:
            messages = self._inbox.take_all() + messages
        for index, msg in enumerate(messages):
            handlers = self._message_handlers  # looked up per message: handlers may change
            if not handlers:
                return messages[index:]
            if len(handlers) != 1:
                self._dispatch(msg)
                continue
            try:  # the common case, one handler, without a call to _dispatch
                handlers[0](msg)
            except Exception:
                self._handler_failed(handlers[0])
        return []

    def _has_message_handlers(self) -> bool:
        return bool(self._message_handlers)

    def _end(self, reason: str) -> None:
        """Close the socket, tell the server and the state, wake waiters (once).

        Run by whoever decided the end under the inbox's lock (``_ending``): the
        holder of the read turn, or ``_close_stream`` when nobody reads. In that
        order, so a caller woken with ``Disconnected`` finds the channel shut
        down and gone from the server's ``connections``.
        """
        self._closing = True
        with contextlib.suppress(OSError):
            self._stream.shutdown(socket.SHUT_RDWR)  # wakes a writer blocked in sendall
        with self._write_lock, contextlib.suppress(OSError):
            self._stream.close()  # under the lock: no write is using the descriptor
        log.debug("channel %r ended: %s", self._name, reason)
        if self._on_closed is not None:
            self._on_closed(self)
        self._ended.set()
        # Code that watches the ShutdownState (Peer) fails its pending requests now.
        self._state.shutdown()
        self._inbox.close(f"channel {self._name!r}: {reason}")
        self._settled.set()

    # -- state and closing -------------------------------------------------

    @property
    def peer_info(self) -> dict[str, object]:
        """Data of the peer's latest ``hello`` or ``ready`` (``peer``, ``pid``, ``handlers``...)."""
        return self._session.peer_info

    @property
    def is_connected(self) -> bool:
        return self._established.is_set() and not self._ended.is_set()

    def _on_shutdown(self) -> None:
        if not self._ended.is_set():  # else _end is closing the channel already
            self._closed_locally = True
            self._close_stream()

    def _close_stream(self) -> None:
        """Stop the connection: whoever reads wakes (EOF) and ends it; if nobody reads, here."""
        self._closing = True
        inbox = self._inbox
        inbox.close(f"channel {self._name!r} was closed")
        with contextlib.suppress(OSError):  # already closed
            self._stream.shutdown(socket.SHUT_RDWR)
        with inbox.lock:
            end_here = not inbox.reading and not self._ending
            if end_here:
                self._ending = True
                inbox.reading = True  # kept: nothing reads a closed stream
        if end_here:
            self._end("closed while nothing read")

    def close(self, timeout: float = 1.0) -> None:
        """Close the connection and wake blocked callers with ``Disconnected``. Idempotent."""
        self.shutdown()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)


class LocalSocketChannelServer(IpcServer):
    """A pure-Python server on a local socket; every client is a ``LocalSocketChannel``.

    ``token``: required from every client (``None``: any client, with or
    without ``hello``). ``handler_names``: names announced in ``ready``.
    ``handshake_timeout``: a client that has not opened its session by then is
    dropped. Raises ``AddressInUse`` when a live server already serves ``name``;
    a socket file left by a crashed server is replaced.

    Usage::

        server = LocalSocketChannelServer("auroraview_4711", token=token)
        server.on_connection(lambda conn: conn.on_message(handle))
        server.emit("scene.saved", {"path": "shot.ma"})
        server.close()
    """

    def __init__(
        self,
        name: str,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        handler_names: Optional[list[str]] = None,
        peer_name: Optional[str] = None,
        handshake_timeout: Optional[float] = 10.0,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        backlog: int = 64,
    ) -> None:
        self._name = name
        self._token = token
        self._max_frame = max_frame
        self._handler_names = list(handler_names or [])
        self._peer_name = peer_name
        self._handshake_timeout = handshake_timeout
        self._channel_options: dict[str, Any] = {
            "capacity": capacity,
            "send_timeout": send_timeout,
        }
        self.metrics = IpcChannelMetrics()
        self._lock = threading.Condition(threading.Lock())
        self._all: set[LocalSocketChannel] = set()
        self._established: list[LocalSocketChannel] = []
        self._pending: deque[LocalSocketChannel] = deque()
        self._connection_handlers: list[ConnectionHandler] = []
        self._counter = itertools.count(1)
        self._closed = False
        self._listener = _Listener(name, backlog)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"aurora-accept-{name}", daemon=True
        )
        self._acceptor.start()

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return self._listener.address

    @property
    def connections(self) -> list[IpcChannel]:
        return list(self._connections())

    def _connections(self) -> list[LocalSocketChannel]:
        with self._lock:
            return list(self._established)

    # -- accepting ---------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            stream = self._listener.accept()
            if stream is None:
                return
            try:
                conn = self._open_connection(stream)
            except Exception:  # keep serving the others
                log.exception("server %r: could not set up a connection", self._name)
                with contextlib.suppress(OSError):
                    stream.close()
                continue
            with self._lock:
                closed = self._closed
                if not closed:
                    self._all.add(conn)
            if closed:
                conn.close()
                return
            conn._start_reader()

    def _open_connection(self, stream: Stream) -> LocalSocketChannel:
        if isinstance(stream, socket.socket) and self._handshake_timeout is not None:
            stream.settimeout(self._handshake_timeout)
        return LocalSocketChannel(
            stream,
            f"{self._name}#{next(self._counter)}",
            server=True,
            token=self._token,
            max_frame=self._max_frame,
            peer_name=self._peer_name,
            list_handler_names=self._current_handler_names,
            on_listed=self._listed,
            on_established=self._opened,
            on_closed=self._forget,
            **self._channel_options,
        )

    def _current_handler_names(self) -> list[str]:
        return list(self._handler_names)

    def _listed(self, conn: LocalSocketChannel) -> None:
        # Just before the connection's ready goes out (see LocalSocketChannel._read_chunk).
        with self._lock:
            self._established.append(conn)

    def _opened(self, conn: LocalSocketChannel) -> None:
        # On the connection's reader thread, after its ready went out and before its
        # first message is delivered, so a connection handler can register on_message
        # and miss nothing.
        with self._lock:
            self._pending.append(conn)
            self._lock.notify_all()
            handlers = list(self._connection_handlers)
        for handler in handlers:
            try:
                handler(conn)
            except Exception:
                self.metrics.record_error()
                log.exception("server %r: connection handler %r raised", self._name, handler)

    def _forget(self, conn: LocalSocketChannel) -> None:
        with self._lock:
            self._all.discard(conn)
            if conn in self._established:
                self._established.remove(conn)
            elif not self._closed:
                self.metrics.record_error()  # refused, or gone before its session opened

    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._pending:
                if self._closed:
                    raise ShuttingDown(f"server {self._name!r} is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ChannelTimeout(f"no client connected within {timeout}s")
                self._lock.wait(remaining)
            return self._pending.popleft()

    def on_connection(self, handler: ConnectionHandler) -> None:
        with self._lock:
            self._connection_handlers.append(handler)

    # -- sending -----------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's emits; write them at the block's end (``IpcServer.batch``)."""
        with contextlib.ExitStack() as stack:
            for conn in self._connections():
                stack.enter_context(conn._batch(skip_if_gone=True))
            yield

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client; a client that is gone is skipped."""
        frame = encode_event(event, data, self._max_frame)
        for conn in self._connections():
            try:
                conn._write(frame, 1)
            except IpcChannelError as exc:
                log.debug("server %r: dropped %r from a broadcast: %s", self._name, conn, exc)
                continue
            self.metrics.record_sent(len(frame))

    def set_handler_names(self, names: list[str]) -> None:
        self._handler_names = list(names)
        for conn in self._connections():
            try:
                conn.announce(names)
            except IpcChannelError as exc:
                log.debug("server %r: could not re-announce to %r: %s", self._name, conn, exc)

    # -- closing -----------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._all)
            self._lock.notify_all()
        self._listener.wake()
        self._acceptor.join(2.0)
        self._listener.close()
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.connections)} connection(s)"
        return f"<LocalSocketChannelServer {self._name!r} at {self.address!r}, {state}>"


# -- the platform part ------------------------------------------------------


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocked ``send`` give up after ``seconds`` while ``recv`` still blocks freely."""
    if is_windows():
        return
    try:
        _set_timeval(sock, socket.SO_SNDTIMEO, seconds)
        if sys.platform == "darwin":
            sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
    except OSError as exc:  # pragma: no cover - exotic platforms
        log.debug("cannot set a send timeout: %s", exc)


def _chunk_reader(stream: Stream) -> Callable[[Optional[float], float], Optional[bytes]]:
    """``read(wait, spin)``: the next chunk from ``stream`` (``b""`` at EOF), or ``None``
    if nothing arrived within ``wait`` seconds (``None``: wait for data or EOF; only a
    socket can be given a ``wait``, on Linux and macOS). A socket is polled for up to
    ``spin`` seconds of the wait before the read sleeps (see ``READ_SPIN``)."""
    if not isinstance(stream, socket.socket):
        recv = stream.recv
        return lambda _wait, _spin: recv(RECV_CHUNK)
    # One buffer for every read: ``recv(256 KiB)`` would allocate (mmap) 256 KiB per
    # call, which costs more than the read of a small frame itself. Only the holder
    # of the read turn reads, so the buffer is never shared.
    buffer = bytearray(RECV_CHUNK)
    view = memoryview(buffer)
    recv_into = stream.recv_into
    # A blocked read gives up after at most ``wait`` seconds through SO_RCVTIMEO, so
    # a timed read is one system call instead of poll + recv. Setting the option is a
    # system call too, so a limit between half of ``wait`` and ``wait`` is kept (a
    # read that gives up early is simply made again), and a new one is set a little
    # under ``wait``, so the next, slightly shorter, wait of a caller with the same
    # timeout keeps it.
    limit = [0.0]  # 0: no limit, the socket's default

    def read(wait: Optional[float], spin: float) -> Optional[bytes]:
        if spin and wait != 0.0:
            end = _perf() + (spin if wait is None else min(spin, wait))
            while True:
                try:
                    return view[: recv_into(buffer, 0, _DONT_WAIT)].tobytes()
                except BlockingIOError:
                    if _perf() >= end:
                        break
            if wait is not None:
                wait -= spin
                if wait <= 0.0:
                    return None
        try:
            if wait == 0.0:
                size = recv_into(buffer, 0, _DONT_WAIT)
            else:
                if wait is None:
                    wanted = 0.0 if limit[0] else None  # no limit: clear one that is set
                elif not wait / 2 <= limit[0] <= wait:
                    wanted = max(wait * 0.9, 0.000_001)  # (0 would mean no limit)
                else:
                    wanted = None  # the limit set is close enough
                if wanted is not None:
                    _set_timeval(stream, socket.SO_RCVTIMEO, wanted)
                    limit[0] = wanted
                size = recv_into(buffer)
        except BlockingIOError:  # nothing came: MSG_DONTWAIT, or SO_RCVTIMEO expired
            return None
        return view[:size].tobytes()

    return read


def _may_spin(stream: Stream) -> bool:
    """Whether a caller's read of ``stream`` may poll it (see ``READ_SPIN``): a Unix
    socket whose peer is another process, on more than one core (Linux)."""
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    if not (READ_SPIN and _DONT_WAIT and peer_credentials and isinstance(stream, socket.socket)):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
        credentials = stream.getsockopt(socket.SOL_SOCKET, peer_credentials, 12)
        peer_pid = struct.unpack("3i", credentials)[0]  # pid, uid, gid
    except (OSError, AttributeError, struct.error):
        return False
    return cores > 1 and peer_pid not in (0, os.getpid())


def _set_timeval(sock: socket.socket, option: int, seconds: float) -> None:
    """Set ``SO_SNDTIMEO`` or ``SO_RCVTIMEO`` (0: none)."""
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, option, timeval)


def _open_stream(address: str, timeout: float) -> Stream:
    """A connected stream to ``address``; ``Disconnected`` if nobody listens there."""
    if is_windows():
        from . import win_pipe

        return win_pipe.connect(address, timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as exc:
        sock.close()
        raise Disconnected(f"no server listens at {address!r} ({exc})") from exc
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


class _Listener:
    """The listening end: a Unix socket (user-only) or a named-pipe listener."""

    def __init__(self, name: str, backlog: int) -> None:
        self._pipe: Any = None
        self._inode: Optional[tuple[int, int]] = None
        self._inode_fd: Optional[int] = None
        if is_windows():
            from . import win_pipe

            self.address = resolve_address(name)
            self._pipe = win_pipe.PipeListener(self.address)
            return
        self.address = claim_address(name)
        self._sock = _bind_user_only(self.address, name)
        # The file is ours while it has our inode. Linux reuses a freed inode number at
        # once, so an O_PATH descriptor keeps ours allocated (and unique) while we run.
        o_path = getattr(os, "O_PATH", 0)
        if o_path:
            with contextlib.suppress(OSError):
                self._inode_fd = os.open(self.address, o_path | os.O_NOFOLLOW)
        st = os.lstat(self.address) if self._inode_fd is None else os.fstat(self._inode_fd)
        self._inode = (st.st_dev, st.st_ino)
        self._sock.listen(backlog)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    def accept(self) -> Optional[Stream]:
        """The next client's stream, or ``None`` once closed."""
        if self._pipe is not None:
            stream: Optional[Stream] = self._pipe.accept()
            return stream
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._wake_r:
                    return None
                try:
                    sock, _addr = self._sock.accept()
                except OSError as exc:  # e.g. out of descriptors: keep serving the others
                    log.warning("accept on %r failed: %s", self.address, exc)
                    time.sleep(0.05)
                    continue
                sock.setblocking(True)
                return sock

    def wake(self) -> None:
        """Make a blocked ``accept`` return ``None``."""
        if self._pipe is not None:
            self._pipe.close()
        else:
            self._wake_w.send(b"x")

    def close(self) -> None:
        """Release the socket (after ``wake`` and the acceptor's exit)."""
        if self._pipe is not None:
            return
        self._selector.close()
        self._sock.close()
        self._wake_w.close()
        self._wake_r.close()
        # Remove the socket file only if it is still ours: a later server may own the name.
        with contextlib.suppress(OSError):
            st = os.lstat(self.address)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.address)
        if self._inode_fd is not None:
            os.close(self._inode_fd)


def _bind_user_only(address: str, name: str) -> socket.socket:
    """A socket bound at ``address`` whose file only its user may open (mode 0600).

    ``os.umask`` is process-wide, so changing it around ``bind`` would race with
    other threads of the host application creating files. ``chmod`` after
    ``bind`` leaves a moment in which others could connect. Instead the socket
    is bound inside a fresh 0700 directory, made 0600 there, and hard-linked into
    place: the link appears atomically with the right mode, and fails if another
    server took the name meanwhile. Where hard links cannot be made, bind-then-chmod
    is the fallback.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        private = tempfile.mkdtemp(prefix=".aurora-", dir=os.path.dirname(address))
    except OSError:
        private = None
    try:
        staged = None if private is None else os.path.join(private, "s")
        if staged is not None and len(os.fsencode(staged)) < MAX_UNIX_PATH:
            sock.bind(staged)
            os.chmod(staged, 0o600)
            try:
                os.link(staged, address)
                return sock
            except FileExistsError:
                raise AddressInUse(
                    f"channel {name!r} was claimed by another server at {address!r} "
                    "while this one started"
                ) from None
            except OSError as exc:
                log.debug("cannot hard-link the socket (%s); binding in place", exc)
                sock.close()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address)
        os.chmod(address, 0o600)
        return sock
    except BaseException:
        sock.close()
        raise
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
