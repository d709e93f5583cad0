"""Local-socket channels in pure Python: ``LocalSocketChannelServer`` and ``LocalSocketChannel``.

The side of PROTOCOL.md for processes without Qt (a packed-mode backend, a
subprocess script, an external tool). Unix domain sockets on Linux and macOS,
named pipes on Windows (:mod:`aurora_dcc.win_pipe`), behind one API. The
protocol rules themselves live in :class:`~aurora_dcc.stream_session.StreamSession`;
this module only moves bytes and threads.

Each channel owns one socket and one daemon reader thread. The reader
``recv``\\ s big chunks, feeds the session, writes the replies the protocol owes
(``pong``, ``ready``, error responses) and delivers messages: straight to the
``on_message`` handlers, on the reader thread, when any are registered (the
fast path), else into an inbox for ``receive()``/``try_receive()``.
Writes (``send``, ``send_many`` for batches) go out under a lock, from
whichever thread calls them.

A handler runs on the reader thread, so while it runs nothing else is read
from that connection: a handler must not wait for a reply on its own channel
(hand such work to an executor), and a handler that sends much to a peer that
is itself blocked sending to us waits at most ``send_timeout`` (then
``SendFailed`` and the connection is closed; part of a frame may be out).

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
import queue
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

from .address import MAX_UNIX_PATH, AddressInUse, claim_address, is_windows, resolve_address
from .channel import IpcChannel
from .errors import (
    ChannelTimeout,
    Disconnected,
    IpcChannelError,
    SendFailed,
    ShuttingDown,
)
from .framing import DEFAULT_MAX_FRAME, encode_frame
from .message import IpcMessage, IpcMessageType
from .metrics import IpcChannelMetrics
from .server import ConnectionHandler, IpcServer
from .session import ready_message
from .shutdown import ShutdownState
from .stream_session import StreamSession

__all__ = ["LocalSocketChannel", "LocalSocketChannelServer", "RetryPolicy", "Stream", "retrying"]

log = logging.getLogger(__name__)

RECV_CHUNK = 256 * 1024
"""Bytes asked of each ``recv``: many frames per read at high rates."""

# Linux: never raise SIGPIPE on a write to a dead peer (a DCC's embedded Python
# may not ignore SIGPIPE the way python.exe does). macOS has SO_NOSIGPIPE instead.
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_SO_NOSIGPIPE = 0x1022

_T = TypeVar("_T")
_EVENT = IpcMessageType.EVENT
_READY = IpcMessageType.READY


class Stream(Protocol):
    """What a channel needs of its connection: a ``socket.socket`` or a named pipe."""

    def recv(self, bufsize: int) -> bytes: ...

    def sendall(self, data: bytes, flags: int = ..., /) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How ``LocalSocketChannel.connect`` retries while no server answers yet.

    ``attempts`` connection attempts in all, sleeping ``initial_delay`` after
    the first failure and doubling the sleep up to ``max_delay``. Only
    "nobody is there" failures are retried (no socket file, connection refused,
    the server vanished during the handshake); a refused token is not.

    Usage::

        LocalSocketChannel.connect("auroraview_4711", retry=RetryPolicy(attempts=20))
        LocalSocketChannel.connect("auroraview_4711", retry=5)   # 5 attempts, default delays
    """

    attempts: int = 10
    initial_delay: float = 0.05
    max_delay: float = 1.0

    def delays(self) -> list[float]:
        """The sleeps between attempts (``attempts - 1`` of them)."""
        out: list[float] = []
        delay = self.initial_delay
        for _ in range(max(0, self.attempts - 1)):
            out.append(min(delay, self.max_delay))
            delay *= 2
        return out


def retrying(
    retry: Union[RetryPolicy, int, None],
    attempt: Callable[[], _T],
    name: str,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """``attempt()``, tried again per ``retry`` while it raises ``Disconnected``.

    ``retry`` is what ``connect(retry=...)`` takes: a :class:`RetryPolicy`, a
    number of attempts, or ``None`` (one attempt). ``sleep`` waits between
    attempts (the Qt side passes one that keeps its event loop running).
    """
    policy = RetryPolicy(attempts=retry) if isinstance(retry, int) else retry
    delays = policy.delays() if policy is not None else []
    for delay in delays:
        try:
            return attempt()
        except Disconnected:
            log.debug("channel %r: no server yet, retrying in %.3fs", name, delay)
            sleep(delay)
    return attempt()


class _Closed:
    """The inbox's end marker: whoever takes it puts it back for the next receiver."""


_CLOSED = _Closed()


class _Inbox:
    """Messages waiting for ``receive()``.

    A ``queue.SimpleQueue``: it is written in C and hands a message to a waiting
    receiver with one wake-up, about half the cost of a ``threading.Condition``.
    Only the reader thread puts. When ``capacity`` messages are waiting, the
    reader waits for room before queueing its next read, so a consumer that falls
    behind slows the sender down (the socket buffers fill) instead of growing
    memory without bound (at most ``capacity`` plus one read's messages).
    """

    def __init__(self, capacity: int, metrics: IpcChannelMetrics) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.metrics = metrics
        self._queue: queue.SimpleQueue[Union[IpcMessage, _Closed]] = queue.SimpleQueue()
        self._room = threading.Condition(threading.Lock())
        self._full = False
        self.closed = False
        self.reason = "channel closed"

    def __len__(self) -> int:
        return max(0, self._queue.qsize() - self.closed)

    def wait_for_room(self, stop: Callable[[], bool]) -> bool:
        """Reader: wait while the inbox is full; False if ``stop()`` became true meanwhile."""
        size = self._queue.qsize
        if size() < self.capacity:
            return True
        with self._room:
            self._full = True
            try:
                while size() >= self.capacity and not self.closed:
                    if stop():
                        return False
                    self._room.wait(0.05)  # also covers a receiver that missed the flag
            finally:
                self._full = False
        return True

    def put_all(self, messages: list[IpcMessage]) -> None:
        if self.closed:
            return  # closed here: nobody is going to receive them
        put = self._queue.put
        for msg in messages:
            put(msg)
        self.metrics.observe_queue_length(self._queue.qsize())

    def _taken(self, item: Union[IpcMessage, _Closed]) -> IpcMessage:
        if isinstance(item, _Closed):
            self._queue.put(item)  # for the next receiver
            raise Disconnected(self.reason)
        if self._full:
            with self._room:
                self._room.notify()
        return item

    def get(self, timeout: Optional[float]) -> IpcMessage:
        try:
            item = self._queue.get(timeout=None if timeout is None else max(0.0, timeout))
        except queue.Empty:
            raise ChannelTimeout(f"no message within {timeout}s") from None
        return self._taken(item)

    def get_nowait(self) -> Optional[IpcMessage]:
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        return self._taken(item)

    def take_all(self) -> list[IpcMessage]:
        taken: list[IpcMessage] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Closed):
                self._queue.put(item)
                break
            taken.append(item)
        if self._full:
            with self._room:
                self._room.notify()
        return taken

    def close(self, reason: str) -> None:
        """Wake every receiver with ``Disconnected`` once the waiting messages are taken."""
        with self._room:
            if not self.closed:
                self.closed = True
                self.reason = reason
                self._queue.put(_CLOSED)
            self._room.notify_all()


class LocalSocketChannel(IpcChannel):
    """One end of a local-socket connection (see the module docstring).

    Clients get one from :meth:`connect`, servers from
    ``LocalSocketChannelServer.accept`` or ``on_connection``; the constructor
    is internal. ``close()`` on either end wakes a blocked ``receive`` on both
    ends with ``Disconnected``. Messages that arrived before the first
    ``on_message`` handler is registered are handed to it at registration
    (on the registering thread), then delivery continues on the reader thread.
    When the connection ends, either way, the channel's ``shutdown_state`` is
    shut down, so whoever watches it (``Peer``) learns at once. After the peer
    left, ``send`` raises ``Disconnected``; after a local close, ``ShuttingDown``.

    Usage::

        channel = LocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
        channel.announce(["tool.run"])           # a client that offers handlers
        channel.on_message(print)                # runs on the reader thread
        channel.send(IpcMessage.request("scene.info"))
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
        handlers: Optional[Callable[[], list[str]]] = None,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        shutdown_state: Optional[ShutdownState] = None,
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
            handlers=handlers,
            metrics=self.metrics,
        )
        self._inbox = _Inbox(capacity, self.metrics)
        self._write_lock = threading.Lock()
        self._delivering = threading.RLock()  # a handler may register another handler
        self._established = threading.Event()
        self._ended = threading.Event()
        self._settled = threading.Event()  # established or ended: what connect() waits for
        self._closing = False
        self._on_established = on_established
        self._on_closed = on_closed
        self._reader: Optional[threading.Thread] = None
        if send_timeout is not None and isinstance(stream, socket.socket):
            _set_send_timeout(stream, send_timeout)
        self._closed_locally = False
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
            channel._write(channel._session.take_output(), 1)
            channel._start_reader()
            if not channel._settled.wait(timeout):
                raise ChannelTimeout(f"no ready from the server of {name!r} within {timeout}s")
            if channel._session.refusal is not None:
                raise channel._session.refusal_exception()
            if not channel._session.established:
                raise Disconnected(f"the server of {name!r} closed the connection during hello")
        except BaseException:
            channel.close()
            raise
        return channel

    def _start_reader(self) -> None:
        self._reader = threading.Thread(
            target=self._read_loop, name=f"aurora-read-{self._name}", daemon=True
        )
        self._reader.start()

    # -- sending -----------------------------------------------------------

    def send(self, msg: IpcMessage) -> None:
        """Send ``msg``. Raises ``MessageTooLarge``, ``ShuttingDown``, ``Disconnected``,
        ``SendFailed`` (the peer did not read for ``send_timeout`` seconds)."""
        self._write(encode_frame(msg, self._session.max_frame), 1)

    def send_many(self, messages: list[IpcMessage]) -> None:
        """Send several messages with one write (the fast way to stream events)."""
        max_frame = self._session.max_frame
        self._write(b"".join([encode_frame(msg, max_frame) for msg in messages]), len(messages))

    def announce(self, handlers: list[str]) -> None:
        """Send a ``ready`` listing ``handlers`` (this side's handler list changed)."""
        self.send(ready_message(self._session.peer_name, handlers))

    def _write(self, data: bytes, count: int) -> None:
        if self._closing:
            if self._closed_locally:
                raise ShuttingDown(f"channel {self._name!r} is closed: message not sent")
            raise Disconnected(f"channel {self._name!r}: the connection is closed")
        metrics = self.metrics
        with self._write_lock:
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
            metrics.messages_sent += count - 1
            metrics.record_sent(len(data))

    # -- receiving ---------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        return self._inbox.get(timeout)

    def try_receive(self) -> Optional[IpcMessage]:
        return self._inbox.get_nowait()

    def _queue_length(self) -> int:
        return len(self._inbox)

    def _handlers_changed(self) -> None:
        if not self._handlers:
            return
        # Hand over what arrived before this handler, before the reader delivers more.
        with self._delivering:
            pending = self._inbox.take_all()
            for msg in pending:
                self._dispatch(msg)

    def _reader_of(self, stream: Stream) -> Callable[[], bytes]:
        """A function returning the next chunk read from ``stream`` (``b""`` at EOF)."""
        if not isinstance(stream, socket.socket):
            recv = stream.recv
            return lambda: recv(RECV_CHUNK)
        # One buffer for every read: ``recv(256 KiB)`` would allocate (mmap) 256 KiB per
        # call, which costs more than the read of a small frame itself.
        buffer = bytearray(RECV_CHUNK)
        view = memoryview(buffer)
        recv_into = stream.recv_into

        def read() -> bytes:
            return view[: recv_into(buffer)].tobytes()

        return read

    def _read_loop(self) -> None:
        read = self._reader_of(self._stream)
        session = self._session
        reason = "the peer closed the connection"
        try:
            while True:
                try:
                    data = read()
                except (socket.timeout, TimeoutError):
                    reason = "no hello within the handshake timeout"
                    break
                except OSError as exc:
                    reason = f"connection lost: {exc}"
                    break
                if not data:
                    break
                messages = session.feed(data)
                output = session.take_output()
                if output:
                    self._write(output, output.count(b"\n"))
                if session.established and not self._established.is_set():
                    self._session_opened(messages)
                if messages:
                    self._deliver(messages)
                if session.must_close:
                    reason = "session refused or frame too large"
                    break
        except IpcChannelError as exc:  # a reply could not be written: the peer is gone
            reason = str(exc)
        except Exception:
            log.exception("channel %r: reader failed", self._name)
            reason = "reader failed"
        finally:
            self._end(reason)

    def _session_opened(self, messages: list[IpcMessage]) -> None:
        if not self._session.server:
            # The ready that opened the session is connect()'s answer, not a message
            # for the application (its data is in peer_info); later readys are delivered.
            for index, msg in enumerate(messages):
                if msg.type is _READY:
                    del messages[index]
                    break
        if isinstance(self._stream, socket.socket) and self._stream.gettimeout() is not None:
            self._stream.settimeout(None)  # the handshake timeout is over
        self._established.set()
        self._settled.set()
        if self._on_established is not None:
            self._on_established(self)

    def _deliver(self, messages: list[IpcMessage]) -> None:
        # Under _delivering, so a handler being registered (which takes the messages
        # already queued) and this delivery cannot cross: nothing is left behind.
        with self._delivering:
            if self._handlers and len(self._inbox):
                messages = self._inbox.take_all() + messages
            for index, msg in enumerate(messages):
                handlers = self._handlers  # looked up per message: handlers may change
                if not handlers:
                    self._queue(messages[index:])
                    return
                if len(handlers) != 1:
                    self._dispatch(msg)
                    continue
                try:  # the common case, one handler, without _dispatch's loop
                    handlers[0](msg)
                except Exception:
                    self.metrics.record_error()
                    log.exception("channel %r: message handler %r raised", self._name, handlers[0])

    def _queue(self, messages: list[IpcMessage]) -> None:
        """Into the inbox, once it has room; to the handler if one is registered meanwhile."""
        if self._inbox.wait_for_room(self._has_handlers):
            self._inbox.put_all(messages)
        else:
            self._deliver(messages)

    def _has_handlers(self) -> bool:
        return bool(self._handlers)

    def _end(self, reason: str) -> None:
        """The reader is done: close the socket, tell the server and the state, wake waiters.

        In that order, so a caller woken with ``Disconnected`` finds the channel
        shut down and gone from the server's ``connections``.
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
        """Stop the connection; the reader wakes (EOF) and finishes the close."""
        self._closing = True
        self._inbox.close(f"channel {self._name!r} was closed")
        with contextlib.suppress(OSError):  # already closed
            self._stream.shutdown(socket.SHUT_RDWR)
        if self._reader is None:
            self._end("closed before it was opened")

    def close(self, timeout: float = 1.0) -> None:
        """Close the connection and wake blocked callers with ``Disconnected``. Idempotent."""
        self.shutdown()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)


class LocalSocketChannelServer(IpcServer):
    """A pure-Python server on a local socket; every client is a ``LocalSocketChannel``.

    ``token``: required from every client (``None``: any client, with or
    without ``hello``). ``handlers``: names announced in ``ready``.
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
        handlers: Optional[list[str]] = None,
        peer_name: Optional[str] = None,
        handshake_timeout: Optional[float] = 10.0,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        backlog: int = 64,
    ) -> None:
        self._name = name
        self._token = token
        self._max_frame = max_frame
        self._handler_names = list(handlers or [])
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
            handlers=self._current_handlers,
            on_established=self._opened,
            on_closed=self._forget,
            **self._channel_options,
        )

    def _current_handlers(self) -> list[str]:
        return list(self._handler_names)

    def _opened(self, conn: LocalSocketChannel) -> None:
        # On the connection's reader thread, before its first message is delivered,
        # so a connection handler can register on_message and miss nothing.
        with self._lock:
            self._established.append(conn)
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

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client; a client that is gone is skipped."""
        frame = encode_frame(IpcMessage(_EVENT, data, event=event), self._max_frame)
        for conn in self._connections():
            try:
                conn._write(frame, 1)
            except IpcChannelError as exc:
                log.debug("server %r: dropped %r from a broadcast: %s", self._name, conn, exc)
                continue
            self.metrics.record_sent(len(frame))

    def set_handlers(self, names: list[str]) -> None:
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
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        if sys.platform == "darwin":
            sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
    except OSError as exc:  # pragma: no cover - exotic platforms
        log.debug("cannot set a send timeout: %s", exc)


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
