"""``StreamSession``: one socket connection's protocol state, without any I/O.

Both socket transports (the Qt side and the pure-Python side) feed the bytes
they read into a ``StreamSession`` and write out what it gives back, so the
rules of PROTOCOL.md live in exactly one place: framing, the ``hello``/``ready``
handshake and its token, answers to bad frames, ``ping`` → ``pong``, the frame
limit.

Usage (a server connection's read loop)::

    session = StreamSession(server=True, token=token, list_handler_names=lambda: ["scene.info"])
    while True:
        messages = session.feed(sock.recv(65536))
        sock.sendall(session.take_output())     # replies the protocol owes
        for msg in messages:
            deliver(msg)                         # requests, events, responses...
        if session.must_close:
            break                                # bad token, frame too large

A client queues its ``hello`` with ``start()`` and is ``established`` once the
server's ``ready`` arrives (``refusal`` holds the error if it was refused).
"""

from __future__ import annotations

from typing import Callable, Optional

from ..channel.metrics import IpcChannelMetrics
from ..errors import (
    ErrorCode,
    IpcChannelError,
    IpcError,
    SerializationError,
    Unauthorized,
    UnsupportedProtocol,
)
from ..protocol.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from ..protocol.handshake import check_hello, error_reply, hello_message, ready_message
from ..protocol.message import IpcMessage, IpcMessageType
from .buffer_link import BufferLink

__all__ = ["StreamSession"]

_HELLO = IpcMessageType.HELLO
_READY = IpcMessageType.READY
_PING = IpcMessageType.PING
_RESPONSE = IpcMessageType.RESPONSE
_REQUEST = IpcMessageType.REQUEST
# Types the session itself looks at; everything else goes straight through.
_RELEASE = IpcMessageType.RELEASE
_SESSION_TYPES = frozenset((_HELLO, _READY, _PING, _RELEASE))
# A server that said bye answers requests itself (with -32002) from then on.
_CLOSING_TYPES = _SESSION_TYPES | {_REQUEST}


class StreamSession:
    """Protocol state of one connection; see the module docstring.

    ``server`` chooses the side. ``token`` is the server's required token, or
    the token a client offers. ``list_handler_names`` returns the handler names a
    server announces in ``ready``. ``metrics`` (optional) is told about every
    received frame and bad frame.

    Usage::

        session = StreamSession(server=False, token="s3cret")
        session.start()                          # queues the hello
        sock.sendall(session.take_output())
        messages = session.feed(sock.recv(65536))
        session.established                      # True once the ready arrived
    """

    def __init__(
        self,
        *,
        server: bool,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        metrics: Optional[IpcChannelMetrics] = None,
    ) -> None:
        self.server = server
        self.token = token
        self.max_frame = max_frame
        self.peer_name = peer_name
        self._list_handler_names = list_handler_names
        self.metrics = metrics if metrics is not None else IpcChannelMetrics()
        self._decoder = FrameDecoder(max_frame)
        self.output: list[bytes] = []
        """Frames owed to the peer (replies, ``pong``, ``ready``): write ``take_output()``."""
        self.established = False
        """Server: the client is accepted. Client: the server's ``ready`` arrived."""
        self.must_close = False
        """The connection is to be closed once ``take_output()`` has been written."""
        self.refusal: Optional[IpcError] = None
        """Client: the error the server refused the session with."""
        self.peer_info: dict[str, object] = {}
        """Data of the peer's latest ``hello`` or ``ready``."""
        self.buffers = BufferLink()
        """Where this side's buffers go and how the peer's arrive (shared memory or inline)."""
        self._session_types = _SESSION_TYPES  # the types _session_message looks at

    def refuse_requests(self) -> None:
        """Server: answer every request read from now on with -32002 (the server said
        ``bye``) instead of delivering it."""
        self._session_types = _CLOSING_TYPES

    # -- output ------------------------------------------------------------

    def start(self) -> None:
        """Client: queue the ``hello`` that opens the session."""
        self.output.append(
            encode_frame(hello_message(self.token, self.peer_name, self.buffers.offer()))
        )

    def announce(self, handler_names: list[str]) -> None:
        """Queue a ``ready`` listing ``handler_names`` (handler list changed)."""
        self.output.append(encode_frame(ready_message(self.peer_name, handler_names)))

    def encode(self, msg: IpcMessage) -> bytes:
        """``msg`` as a frame; raises ``MessageTooLarge`` over ``max_frame``."""
        return encode_frame(msg, self.max_frame)

    def take_output(self) -> bytes:
        """Bytes the protocol owes the peer (replies, ``pong``, ``ready``); clears them."""
        if not self.output:
            return b""
        out = b"".join(self.output)
        self.output.clear()
        return out

    def _reply(self, msg: IpcMessage) -> None:
        try:
            frame = encode_frame(msg)
        except IpcChannelError as exc:
            # A reply echoing peer data (a pong's id) over the limit: answer it short, and
            # go on with the rest of the read.
            self.metrics.record_error()
            frame = encode_frame(IpcMessage.error_response(None, exc.code, "reply too large"))
        self.output.append(frame)

    # -- input -------------------------------------------------------------

    def feed(self, data: bytes) -> list[IpcMessage]:
        """Take bytes read from the socket; return the messages for the application."""
        if self.must_close:
            return []
        frames = self._decoder.feed(data)
        metrics = self.metrics
        metrics.bytes_received += len(data)
        metrics.messages_received += len(frames)
        delivered: list[IpcMessage] = []
        append = delivered.append
        decode = IpcMessage.from_json
        buffers = self.buffers
        session_types = self._session_types
        for frame in frames:
            try:
                msg = decode(frame, buffers)
            except SerializationError as exc:
                metrics.record_error()
                self._reply(error_reply(exc))
                continue
            if (msg.type in session_types or not self.established) and not self._session_message(
                msg
            ):
                if self.must_close:
                    return delivered
                continue
            append(msg)
        if self._decoder.overflowed and not self.must_close:
            metrics.record_error()
            self._refuse(IpcError(ErrorCode.MESSAGE_TOO_LARGE, str(self._decoder.error())))
        return delivered

    def _session_message(self, msg: IpcMessage) -> bool:
        """Handle the handshake and ``ping``/``hello``/``ready``; True to deliver ``msg``."""
        if not self.established and not self._open(msg):
            return False
        msg_type = msg.type
        if msg_type is _PING:
            self._reply(IpcMessage.pong(msg.id))
            return False
        if msg_type is _REQUEST and self._session_types is _CLOSING_TYPES:
            self._reply(
                IpcMessage.error_response(
                    msg.id, ErrorCode.SHUTTING_DOWN, "shutting down: the server said bye"
                )
            )
            return False
        if msg_type is _RELEASE:
            self.buffers.on_release(msg.data)  # the peer is done with our blocks
            return False
        if msg_type is _HELLO:
            # A repeated hello is answered like the first (idempotent).
            self._hello_from_client(msg)
            return False
        if msg_type is _READY and isinstance(msg.data, dict):
            self.peer_info = msg.data
        return True

    def _open(self, msg: IpcMessage) -> bool:
        """Handle a message that arrives before the session is established.

        Returns True if ``msg`` should then be processed as usual.
        """
        if self.server:
            if msg.type is _HELLO:
                error = check_hello(msg, self.token)
                if error is not None:
                    self._refuse(error, msg.id)
                    return False
                self.established = True
                self._hello_from_client(msg)
                return False
            if self.token is not None:
                self._refuse(IpcError(ErrorCode.UNAUTHORIZED, "unauthorized: send hello first"))
                return False
            self.established = True  # a token-less server accepts hello-less clients
            return True
        # Client: the first thing owed is the server's ready, or its refusal.
        if msg.type is _READY:
            self.established = True
            if isinstance(msg.data, dict):
                self.buffers.peer_offered(msg.data.get("buffers"))
            return True
        if msg.type is _RESPONSE and msg.error is not None:
            self.refusal = msg.error
            self.must_close = True
            return False
        return True  # anything else before ready (an event, say) is delivered

    def _hello_from_client(self, msg: IpcMessage) -> None:
        """Server: note an accepted ``hello``'s data and answer it with ``ready``."""
        self.peer_info = msg.data if isinstance(msg.data, dict) else {}
        self.buffers.peer_offered(self.peer_info.get("buffers"))
        offer = self.buffers.offer()
        self._reply(ready_message(self.peer_name, self._handler_names(), offer))

    def _refuse(self, error: IpcError, msg_id: Optional[str] = None) -> None:
        self._reply(IpcMessage(_RESPONSE, id=msg_id, error=error))
        self.must_close = True

    def _handler_names(self) -> list[str]:
        return self._list_handler_names() if self._list_handler_names is not None else []

    def refusal_exception(self) -> IpcChannelError:
        """The exception a client's ``connect()`` raises for ``refusal``."""
        error = self.refusal
        if error is None:
            return IpcChannelError("session not refused")
        if error.code == ErrorCode.UNAUTHORIZED:
            return Unauthorized(error.message)
        if error.code == ErrorCode.UNSUPPORTED_PROTOCOL:
            return UnsupportedProtocol(error.message)
        exc = IpcChannelError(f"server refused the session: {error.message}")
        exc.code = error.code
        return exc
