"""Protocol error codes, the :class:`IpcError` payload, and channel exceptions.

``IpcError`` is *data*: the ``error`` object of a message on the wire
(docs/PROTOCOL.md, "Error codes"). The ``IpcChannelError`` family are *Python
exceptions* raised by channels; each carries the protocol code that describes
it, so a server can turn any of them into an error response.

Usage::

    try:
        msg = channel.receive(timeout=1.0)
    except ChannelTimeout:          # also a builtin TimeoutError
        ...
    except Disconnected:            # also a builtin ConnectionError
        ...
"""

from __future__ import annotations

import reprlib
from enum import IntEnum
from typing import Any, Optional

__all__ = [
    "ChannelTimeout",
    "Disconnected",
    "ErrorCode",
    "IpcChannelError",
    "IpcError",
    "MessageTooLarge",
    "ReceiveFailed",
    "SendFailed",
    "SerializationError",
    "ShuttingDown",
    "Unauthorized",
    "UnsupportedProtocol",
    "peer_repr",
]

# Bounds for text made of peer data: a few levels deep, a few items wide.
_peer_repr = reprlib.Repr()
_peer_repr.maxlevel = 4
_peer_repr.maxstring = 200
_peer_repr.maxother = 200
_peer_repr.maxlong = 60
for _attr in ("maxdict", "maxlist", "maxtuple", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_peer_repr, _attr, 12)

PEER_REPR_LIMIT = 1000
"""The longest text ``peer_repr`` returns."""


def peer_repr(value: Any) -> str:
    """A ``repr`` of data from a peer, bounded in depth and size: for logs and error texts.

    Whatever a peer sent (a deeply nested ``error.data``, a 16 MiB string), the
    result is at most ``PEER_REPR_LIMIT`` characters and never recurses deeply.

    Usage::

        log.warning("error from the other side: %s", peer_repr(msg.error))
    """
    try:
        text = _peer_repr.repr(value)
    except Exception as exc:  # a value's own __repr__ may fail; the log line must not
        text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    if len(text) > PEER_REPR_LIMIT:
        text = text[: PEER_REPR_LIMIT - 3] + "..."
    return text


class ErrorCode(IntEnum):
    """The error codes of docs/PROTOCOL.md.

    Usage::

        if exc.code == ErrorCode.TIMEOUT:        # an IpcCallError or IpcChannelError
            retry()
    """

    PARSE_ERROR = -32700
    INVALID_MESSAGE = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    TIMEOUT = -32001
    SHUTTING_DOWN = -32002
    UNAUTHORIZED = -32003
    MESSAGE_TOO_LARGE = -32004
    UNSUPPORTED_PROTOCOL = -32005


class IpcError:
    """The ``error`` object of a message: ``{code, message, data?}``.

    Usage::

        err = IpcError(IpcError.METHOD_NOT_FOUND, "no handler for 'scene.nope'")
        err.to_dict()   # {'code': -32601, 'message': "no handler for 'scene.nope'"}
    """

    __slots__ = ("code", "data", "message")

    PARSE_ERROR = ErrorCode.PARSE_ERROR
    INVALID_MESSAGE = ErrorCode.INVALID_MESSAGE
    METHOD_NOT_FOUND = ErrorCode.METHOD_NOT_FOUND
    INVALID_PARAMS = ErrorCode.INVALID_PARAMS
    INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR
    TIMEOUT = ErrorCode.TIMEOUT
    SHUTTING_DOWN = ErrorCode.SHUTTING_DOWN
    UNAUTHORIZED = ErrorCode.UNAUTHORIZED
    MESSAGE_TOO_LARGE = ErrorCode.MESSAGE_TOO_LARGE
    UNSUPPORTED_PROTOCOL = ErrorCode.UNSUPPORTED_PROTOCOL

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = int(code)
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> IpcError:
        """Build from a decoded ``error`` object; raises ``SerializationError``."""
        if not isinstance(obj, dict):
            raise SerializationError("field 'error' must be an object")
        code, message = obj.get("code"), obj.get("message")
        if not isinstance(code, int) or isinstance(code, bool):
            raise SerializationError("field 'error.code' must be an integer")
        if not isinstance(message, str):
            raise SerializationError("field 'error.message' must be a string")
        return cls(code, message, obj.get("data"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IpcError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        # Bounded: an error's message and data come from the peer and end up in logs.
        return f"IpcError({self.code}, {peer_repr(self.message)}, data={peer_repr(self.data)})"


class IpcChannelError(Exception):
    """Base of every error a channel raises. ``code`` is the protocol code."""

    code: int = ErrorCode.INTERNAL_ERROR

    def to_ipc_error(self) -> IpcError:
        """This exception as the ``error`` object of a response."""
        return IpcError(self.code, str(self))


class Disconnected(IpcChannelError, ConnectionError):
    """The peer is gone, or the channel was closed while waiting."""

    code = ErrorCode.SHUTTING_DOWN


class SendFailed(IpcChannelError):
    """A message could not be sent (queue full, socket error; see ``__cause__``)."""


class ReceiveFailed(IpcChannelError):
    """A message could not be received (socket error; see ``__cause__``)."""


class ChannelTimeout(IpcChannelError, TimeoutError):
    """A wait ran out of time. Also a builtin ``TimeoutError``."""

    code = ErrorCode.TIMEOUT


class ShuttingDown(IpcChannelError):
    """The channel (or its shared ``ShutdownState``) is shutting down."""

    code = ErrorCode.SHUTTING_DOWN


class SerializationError(IpcChannelError, ValueError):
    """Bytes that are not a valid message, or a message that cannot be encoded.

    ``code`` is ``PARSE_ERROR`` (not JSON) or ``INVALID_MESSAGE`` (JSON, but not
    a message); ``message_id`` is the offending frame's ``id`` when it could be
    read, so the error response can echo it.
    """

    def __init__(
        self,
        reason: str,
        code: int = ErrorCode.INVALID_MESSAGE,
        message_id: Optional[str] = None,
    ) -> None:
        super().__init__(reason)
        self.code = int(code)
        self.message_id = message_id


class MessageTooLarge(IpcChannelError):
    """A frame exceeded the receiver's limit (``max_frame``)."""

    code = ErrorCode.MESSAGE_TOO_LARGE


class Unauthorized(IpcChannelError):
    """The server refused the session token."""

    code = ErrorCode.UNAUTHORIZED


class UnsupportedProtocol(IpcChannelError):
    """The peer speaks a protocol version this side does not."""

    code = ErrorCode.UNSUPPORTED_PROTOCOL
