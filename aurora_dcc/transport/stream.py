"""What every stream transport shares: ``StreamChannel``, ``StreamServer`` and their ``Inbox``.

The pure-Python socket channel, the Qt socket channel and the stdio channel
all carry the frames of PROTOCOL.md over a byte stream. Everything but the
byte I/O and the way a blocked caller waits is the same for them and lives
here, once (as ``multiprocessing.connection._ConnectionBase`` does for its
transports):

* the :class:`~aurora_dcc.transport.connection.StreamSession` handling: feed
  what was read, write what the protocol owes, drop the ``ready`` that opened
  a client's session, call the ``on_established`` callback;
* a client's handshake and how a refusal maps to exceptions;
* sending (``send``, ``emit``, ``send_many``, ``announce``) through one encode
  path, after one closed-channel check;
* the inbox (bounded, :class:`~aurora_dcc.transport.inbox.Inbox`) and in-order
  delivery to the message handlers;
* for servers: the connection bookkeeping, ``accept``, ``on_connection``,
  broadcast ``emit`` and ``set_handler_names``, and the graceful close (``bye``,
  then each connection closes once the requests it accepted are answered, within
  ``close_grace`` seconds).

A transport implements the hooks listed on each class (``_write_frames``,
``_next_message``, ``_wait_settled``; ``address`` and ``_stop_listening`` for a
server).

Usage (a transport over some byte stream ``io``)::

    class MyChannel(StreamChannel):
        def _write_frames(self, data, count):
            io.write(data)
            self.metrics.record_sent(len(data))
        def _next_message(self, timeout): ...     # pop the inbox, waiting your way
        def _wait_settled(self, timeout): ...     # until self._open or the end
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from abc import abstractmethod
from collections import deque
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..channel.metrics import IpcChannelMetrics
from ..channel.server import ConnectionHandler, IpcServer
from ..channel.shutdown import ShutdownState
from ..errors import ChannelTimeout, Disconnected, IpcChannelError, ShuttingDown
from ..protocol.buffers import BufferSettings
from ..protocol.framing import DEFAULT_MAX_FRAME, encode_event, encode_frame
from ..protocol.handshake import ready_message
from ..protocol.message import IpcMessage, IpcMessageType
from .buffer_link import PER_CONNECTION, CarriesBuffers
from .connection import StreamSession
from .inbox import Inbox

__all__ = ["DEFAULT_CLOSE_GRACE", "Inbox", "StreamChannel", "StreamServer"]

log = logging.getLogger(__name__)

_READY = IpcMessageType.READY
_BYE_FRAME = encode_frame(IpcMessage(IpcMessageType.BYE))

DEFAULT_CLOSE_GRACE = 5.0
"""Seconds a closing server gives the requests its connections accepted before it
said ``bye`` to be answered; then it closes them anyway (``close_grace``)."""


class StreamChannel(IpcChannel):
    """A channel over a byte stream: the protocol, sending, the inbox and delivery.

    The transport (a subclass) moves the bytes and decides how a caller waits;
    see the module docstring for the hooks. ``_closed`` is true once sending is
    over (read without a lock on every send); ``_closed_locally`` tells whether
    this side closed (then ``send`` raises ``ShuttingDown``, else ``Disconnected``).

    Usage::

        channel = LocalSocketChannel.connect("auroraview_4711")   # a StreamChannel
        channel.send_many([IpcMessage.event_message("tick", i) for i in range(3)])
        channel.peer_info["peer"]
    """

    def __init__(
        self,
        name: str,
        *,
        server: bool,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        capacity: int = 10_000,
        shutdown_state: Optional[ShutdownState] = None,
        on_established: Optional[Callable[[Any], None]] = None,
        on_closed: Optional[Callable[[Any], None]] = None,
        on_room: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__(name, shutdown_state)
        self._session = StreamSession(
            server=server,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            list_handler_names=list_handler_names,
            metrics=self.metrics,
        )
        self._max_frame = max_frame
        self._inbox = Inbox(capacity, self.metrics, on_room)
        self._closed = False
        self._closed_locally = False
        self._open = False  # a bool, not an Event: looked at on every read
        self._on_established = on_established
        self._on_closed = on_closed
        self._undelivered: deque[IpcMessage] = deque()  # read, handed to no handler yet
        self._buffers = self._session.buffers
        self._attach_buffers()

    # -- the transport's part ----------------------------------------------

    @abstractmethod
    def _write_frames(self, data: bytes, count: int) -> None:
        """Write (or hold) ``data``, ``count`` whole frames; any thread. Raises
        ``SendFailed``/``Disconnected``. The closed check is done before."""

    @abstractmethod
    def _next_message(self, timeout: Optional[float]) -> Optional[IpcMessage]:
        """The next message; ``None`` after ``timeout`` (0: do not wait);
        ``Disconnected`` once the inbox is closed and empty."""

    @abstractmethod
    def _wait_settled(self, timeout: float) -> bool:
        """Wait until the session opened or the connection ended; False after ``timeout``."""

    def _session_ready_to_write(self) -> None:
        """Write the output owed when the session opens (its ``ready``, on a server)."""
        self._write_output()

    def _opened(self) -> None:
        """The session just opened: wake whoever waits for it."""

    def _write_output(self) -> None:
        """Write what the protocol owes the peer (a ``ready``, ``pong``, error replies)."""
        output = self._session.take_output()
        if output:
            self._write_frames(output, output.count(b"\n"))

    # -- sending -------------------------------------------------------------

    def send(self, msg: IpcMessage) -> None:
        """Send ``msg``. Raises ``MessageTooLarge``, ``ShuttingDown`` (closed here),
        ``Disconnected`` (the peer left), ``SendFailed`` (the peer stopped reading)."""
        if self._closed:
            raise self._closed_error()
        self._write_frames(encode_frame(msg, self._max_frame, self._buffers), 1)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an ``event`` message named ``event`` (as ``send`` does)."""
        if self._closed:
            raise self._closed_error()
        self._write_frames(encode_event(event, data, self._max_frame, self._buffers), 1)

    def send_many(self, messages: list[IpcMessage]) -> None:
        """Send several messages with one write (the fast way to stream events).

        Nothing is sent if one of them is over the frame limit (``MessageTooLarge``).
        """
        if not messages:
            return
        max_frame, buffers = self._max_frame, self._buffers
        frames = [encode_frame(msg, max_frame, buffers) for msg in messages]  # before any write
        self._send_frame(b"".join(frames), len(messages))

    def announce(self, handler_names: list[str]) -> None:
        """Send a ``ready`` listing ``handler_names`` (this side's handler list changed)."""
        self.send(ready_message(self._session.peer_name, handler_names))

    def _send_frame(self, frame: bytes, count: int = 1) -> None:
        """Send encoded frames (a server's broadcast encodes once for all clients)."""
        if self._closed:
            raise self._closed_error()
        self._write_frames(frame, count)

    def _send_broadcast(self, frame: bytes) -> None:
        """A server's broadcast of one frame (``StreamServer.emit``); a transport
        overrides it to never wait for a slow peer and to drop one too far behind."""
        self._send_frame(frame)

    def _wait_written(self, timeout: float) -> None:
        """Before a closing server closes this connection: wait (up to ``timeout``) until
        what was sent on it is written; a transport that holds or queues output overrides."""

    def say_bye(self) -> None:
        """A closing server's connection: send ``bye``; from now on the session answers
        each request it reads with -32002 instead of delivering it (PROTOCOL.md, Session 6)."""
        self._session.refuse_requests()
        try:
            self._check_open()
            self._write_unheld(_BYE_FRAME)
        except IpcChannelError as exc:  # gone meanwhile: its close is on its way
            log.debug("channel %r: bye not sent: %s", self._name, exc)

    def _write_unheld(self, frame: bytes) -> None:
        """Write one frame now, not held by a ``batch()`` of this thread: a close may
        follow at once (a transport whose batches hold writes overrides)."""
        self._write_frames(frame, 1)

    # -- buffers (docs/buffers.md) ---------------------------------------------

    def _attach_buffers(self) -> None:
        """Wire the session's ``BufferLink`` to this channel: its ``release`` frames go
        out with the read's replies or from any thread, a sender waiting for blocks
        waits as ``wait_event`` does, and the blocks go when the connection ends."""
        owe = self._session.output.append
        self._buffers.attach(owe, self._send_frame, self.wait_event, self._max_frame)
        self._state.on_shutdown(self._buffers.close)

    def set_buffer_settings(self, settings: BufferSettings) -> None:
        """Buffer settings for this connection from now on (threshold, zero copy, numpy...);
        whether shared memory is offered at all was decided when it connected."""
        self._buffers.set_settings(settings)

    def _buffer_event_frame(self, event: str, data: Any) -> bytes:
        """A broadcast event's frame with buffers, placed for this connection without
        waiting for its blocks (a slow client is skipped, as for any broadcast)."""
        return encode_event(event, data, self._max_frame, self._buffers.without_waiting())

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> IpcChannelError:
        if self._closed_locally:
            return ShuttingDown(f"channel {self._name!r} is closed: message not sent")
        return Disconnected(f"channel {self._name!r}: the connection is closed")

    # -- receiving -----------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        msg = self._next_message(timeout)
        if msg is None:
            raise ChannelTimeout(f"channel {self._name!r}: no message within {timeout}s")
        return msg

    def try_receive(self) -> Optional[IpcMessage]:
        return self._next_message(0.0)

    def _queue_length(self) -> int:
        return len(self._inbox)

    @property
    def peer_info(self) -> dict[str, object]:
        """Data of the peer's latest ``hello`` or ``ready`` (``peer``, ``pid``, ``handlers``...)."""
        return self._session.peer_info

    @property
    def is_connected(self) -> bool:
        """True while the session is open and the connection not closed."""
        return self._open and not self._closed

    # -- the protocol --------------------------------------------------------

    def _handshake(self, timeout: float, who: str) -> None:
        """Client: send ``hello``, wait for ``ready``; closes the channel if that fails.

        Raises ``Unauthorized``/``UnsupportedProtocol`` (refused), ``ChannelTimeout``
        (no answer), ``Disconnected`` (``who`` hung up during the handshake).
        """
        session = self._session
        session.start()
        try:
            self._write_output()
            settled = self._wait_settled(timeout)
            if session.refusal is not None:
                raise session.refusal_exception()
            if not settled:
                raise ChannelTimeout(f"no ready from {who} within {timeout}s")
            if not self._open:
                raise Disconnected(f"{who} closed the connection during hello")
        except BaseException:
            self.close()
            raise

    def _feed(self, data: bytes) -> list[IpcMessage]:
        """Feed bytes read to the session, write what it owes; the messages for the
        application. The caller closes the connection if ``session.must_close``."""
        session = self._session
        messages = session.feed(data)
        if not self._open and session.established:
            self._session_opened(messages)
        elif session.output:
            self._write_output()
        return messages

    def _session_opened(self, messages: list[IpcMessage]) -> None:
        self._session_ready_to_write()
        if not self._session.server:
            # The ready that opened the session is connect()'s answer, not a message
            # for the application (its data is in peer_info); later readys are delivered.
            for index, msg in enumerate(messages):
                if msg.type is _READY:
                    del messages[index]
                    break
        self._open = True
        self._opened()
        if self._on_established is not None:
            self._on_established(self)  # before delivery: on_connection may add handlers

    # -- delivery ------------------------------------------------------------

    def _deliver(self, messages: list[IpcMessage]) -> list[IpcMessage]:
        """To the message handlers, in order, behind what waits in the inbox; returns
        what no handler took (the last one went away). One delivering thread at a time.

        Re-entrant: a handler that waits in a nested event loop may read and deliver
        more; that queues behind the rest of this batch.
        """
        undelivered = self._undelivered
        if self._message_handlers and self._inbox.messages:
            undelivered.extend(self._inbox.take_all())
        if not undelivered and len(messages) == 1:
            handlers = self._message_handlers
            if len(handlers) == 1:  # the common case, without the queue
                handler = handlers[0]
                try:
                    handler(messages[0])
                except Exception:
                    self._handler_failed(handler)
                return []
        undelivered.extend(messages)
        while undelivered:
            handlers = self._message_handlers  # looked up per message: handlers may change
            if not handlers:
                left = list(undelivered)
                undelivered.clear()
                return left
            msg = undelivered.popleft()
            if len(handlers) != 1:
                self._dispatch(msg)
                continue
            handler = handlers[0]
            try:  # the common case, one handler, without a call to _dispatch
                handler(msg)
            except Exception:
                self._handler_failed(handler)
        return []

    def _drain_inbox_to_handlers(self) -> None:
        """Hand what arrived before the first handler to the handlers (same rule as
        ``_deliver``); what they do not take goes back to the inbox."""
        if self._message_handlers and self._inbox.messages:
            left = self._deliver([])
            if left:
                with self._inbox.lock:
                    self._inbox.messages.extendleft(reversed(left))


class StreamServer(IpcServer):
    """A server of stream channels: bookkeeping, ``accept``, broadcast, announcements.

    A transport implements ``address``, ``_stop_listening`` and makes each
    connection (a :class:`StreamChannel`), telling the base of its life:
    ``_track`` (new), ``_list`` (established: broadcasts reach it),
    ``_connection_opened`` (ready for ``accept`` and the connection handlers),
    ``_connection_closed`` (gone). All of them take ``_lock``.

    Usage::

        with LocalSocketChannelServer("auroraview_4711") as server:   # a StreamServer
            server.on_connection(lambda conn: conn.on_message(print))
            server.emit("scene.saved", {"path": "shot.ma"})
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
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        self._name = name
        self._token = token
        self._max_frame = max_frame
        self._handler_names = list(handler_names or [])
        self._peer_name = peer_name
        self._handshake_timeout = handshake_timeout
        self._capacity = capacity
        self._close_grace = close_grace
        self._lock = threading.Condition(threading.Lock())
        self._all: set[StreamChannel] = set()  # every connection still open
        self._established: list[StreamChannel] = []  # broadcasts go to these
        self._pending: deque[StreamChannel] = deque()  # established, not yet accept()ed
        self._connection_handlers: list[ConnectionHandler] = []
        self._counter = itertools.count(1)
        self._closed = False
        self.metrics = IpcChannelMetrics(lambda: len(self._pending))

    # -- the transport's part ----------------------------------------------

    @abstractmethod
    def _stop_listening(self) -> None:
        """Stop accepting clients and release the listener (after ``_begin_close``)."""

    def _wait(self, done: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Block until ``done()`` or ``timeout``; ``_wake`` re-checks."""
        with self._lock:
            return self._lock.wait_for(done, timeout)

    def _wake(self) -> None:
        """The pending queue or the closed flag changed: re-check ``_wait``."""
        with self._lock:
            self._lock.notify_all()

    # -- bookkeeping -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def connections(self) -> list[IpcChannel]:
        return list(self._connections())

    def _connections(self) -> list[StreamChannel]:
        with self._lock:
            return list(self._established)

    def _current_handler_names(self) -> list[str]:
        return list(self._handler_names)

    def _track(self, conn: StreamChannel) -> bool:
        """A new connection, still in its handshake; False if the server is closed."""
        with self._lock:
            if self._closed:
                return False
            self._all.add(conn)
            return True

    def _list(self, conn: StreamChannel) -> None:
        """``conn`` is established: broadcasts reach it from now on."""
        with self._lock:
            if conn not in self._established:
                self._established.append(conn)

    def _connection_opened(self, conn: StreamChannel) -> None:
        """``conn``'s session is open: queue it for ``accept``, run the connection
        handlers (on this thread, before anything is delivered to ``conn``)."""
        with self._lock:
            if conn not in self._established:
                self._established.append(conn)
            self._pending.append(conn)
            handlers = list(self._connection_handlers)
        self._wake()
        for handler in handlers:
            try:
                handler(conn)
            except Exception:
                self.metrics.record_error()
                log.exception("server %r: connection handler %r raised", self._name, handler)

    def _connection_closed(self, conn: StreamChannel) -> None:
        """``conn`` is gone; one that never opened its session counts as an error."""
        with self._lock:
            self._all.discard(conn)
            # Left in _pending for accept(), with what it sent queued, unless the
            # connection handlers had it: nobody may ever accept() (a host), and the
            # queue would keep every connection ever made.
            if self._connection_handlers and conn in self._pending:
                self._pending.remove(conn)
            if conn in self._established:
                self._established.remove(conn)
            elif not self._closed:
                self.metrics.record_error()  # refused, silent, or gone before its session

    # -- the server API ----------------------------------------------------------

    def accept(self, timeout: Optional[float] = None) -> IpcChannel:
        pending = self._pending
        self._wait(lambda: bool(pending) or self._closed, timeout)
        with self._lock:
            if pending:
                return pending.popleft()
        if self._closed:
            raise ShuttingDown(f"server {self._name!r} is closed")
        raise ChannelTimeout(f"server {self._name!r}: no client connected within {timeout}s")

    def on_connection(self, handler: ConnectionHandler) -> None:
        with self._lock:
            self._connection_handlers.append(handler)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client (encoded once); a gone client is
        skipped, and one too far behind is dropped (the servers' ``max_send_buffer``)."""
        try:
            frame = encode_event(event, data, self._max_frame, PER_CONNECTION)
        except CarriesBuffers:  # each client's buffers go its own way (shared memory or not)
            self._emit_buffers(event, data)
            return
        size = len(frame)
        for conn in self._connections():
            try:
                conn._send_broadcast(frame)
            except IpcChannelError as exc:  # closed meanwhile (or dropped): it leaves the list soon
                log.debug("server %r: event %r not sent to %r: %s", self._name, event, conn, exc)
                continue
            self.metrics.record_sent(size)

    def _emit_buffers(self, event: str, data: Any) -> None:
        """``emit`` of an event that carries buffers: encoded for each connection."""
        for conn in self._connections():
            try:
                frame = conn._buffer_event_frame(event, data)
                conn._send_broadcast(frame)
            except IpcChannelError as exc:
                log.debug("server %r: event %r not sent to %r: %s", self._name, event, conn, exc)
                continue
            self.metrics.record_sent(len(frame))

    def set_handler_names(self, names: list[str]) -> None:
        self._handler_names = list(names)
        for conn in self._connections():
            try:
                conn.announce(names)
            except IpcChannelError as exc:
                log.debug("server %r: could not re-announce to %r: %s", self._name, conn, exc)

    # -- closing -------------------------------------------------------------

    def _begin_close(self) -> Optional[list[StreamChannel]]:
        """Mark the server closed and wake ``accept``; the connections to close, or
        ``None`` if it was closed already."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            conns = list(self._all)
            for conn in self._established:
                if conn not in self._all:
                    conns.append(conn)
        self._wake()
        return conns

    def close(self) -> None:
        """Stop listening, say ``bye`` to every client and close the connections: at
        once those with no request in flight, the others once their requests are
        answered or ``close_grace`` seconds have passed (without waiting for them here).
        Idempotent."""
        conns = self._begin_close()
        if conns is None:
            return
        self._stop_listening()
        self._close_connections(conns)

    def _close_connections(self, conns: list[StreamChannel]) -> None:
        """``close``'s part after the listener stopped: ``bye``, then the closes."""
        busy = []
        for conn in conns:
            if conn.is_connected:
                conn.say_bye()
                # Requests a Peer is handling (Responder's guard); their answers go first.
                if conn.shutdown_state.in_flight:
                    busy.append(conn)
                    continue
            conn.close()
        if busy:
            self._close_when_answered(busy, time.monotonic() + self._close_grace)

    def _close_when_answered(self, busy: list[StreamChannel], deadline: float) -> None:
        """Close each of ``busy`` once nothing is in flight on it, or at ``deadline``.

        A thread of its own: ``close()`` may be called by a handler whose own request
        is one of those in flight. The Qt server does this on its loop instead.
        """

        def close_when_answered() -> None:
            for conn in busy:
                try:
                    conn.shutdown_state.wait_for_drain(max(0.0, deadline - time.monotonic()))
                except ChannelTimeout:
                    log.warning(
                        "server %r: %r still handling a request after %ss; closed",
                        self._name,
                        conn,
                        self._close_grace,
                    )
                conn._wait_written(max(0.0, deadline - time.monotonic()))
                conn.close()

        threading.Thread(
            target=close_when_answered, name=f"aurora-close-{self._name}", daemon=True
        ).start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.connections)} connection(s)"
        return f"<{type(self).__name__} {self._name!r} at {self.address!r}, {state}>"
