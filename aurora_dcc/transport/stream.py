"""What every stream transport's channel shares: ``StreamChannel`` and its ``Inbox``.

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
* what a server asks of each connection: ``send_broadcast``, ``say_bye``,
  ``wait_written`` (the server's side is :mod:`.stream_server`).

A transport implements the hooks listed on the class (``_write_frames``,
``_next_message``, ``_wait_settled``).

Usage (a transport over some byte stream ``io``)::

    class MyChannel(StreamChannel):
        def _write_frames(self, data, count):
            io.write(data)
            self.metrics.record_sent(len(data))
        def _next_message(self, timeout): ...     # pop the inbox, waiting your way
        def _wait_settled(self, timeout): ...     # until self._open or the end
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections import deque
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..channel.shutdown import ShutdownState
from ..errors import ChannelTimeout, Disconnected, IpcChannelError, ShuttingDown
from ..protocol.buffers import BufferSettings
from ..protocol.framing import DEFAULT_MAX_FRAME, encode_event, encode_frame
from ..protocol.handshake import ready_message
from ..protocol.message import IpcMessage, IpcMessageType
from .connection import StreamSession
from .inbox import Inbox

__all__ = ["Inbox", "StreamChannel"]

log = logging.getLogger(__name__)

_READY = IpcMessageType.READY
_BYE_FRAME = encode_frame(IpcMessage(IpcMessageType.BYE))


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

    def send_broadcast(self, frame: bytes) -> None:
        """A server's broadcast of one frame (``StreamServer.emit``); a transport
        overrides it to never wait for a slow peer and to drop one too far behind."""
        self._send_frame(frame)

    def wait_written(self, timeout: float) -> None:
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

    def broadcast_event_frame(self, event: str, data: Any) -> bytes:
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
