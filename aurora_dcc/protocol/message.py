"""``IpcMessage``: one message of docs/PROTOCOL.md, and its JSON encoding.

Usage::

    msg = IpcMessage.request("scene.info", {"verbose": True})
    raw = msg.to_bytes()                 # b'{"type":"request","id":"...",...}'
    assert IpcMessage.from_json(raw) == msg

Decoding never raises anything but :class:`SerializationError` for bad input,
whose ``code`` says whether the frame was not JSON (-32700) or not a message
(-32600).
"""

from __future__ import annotations

import itertools
import os
from enum import Enum
from typing import Any, Optional

from ..errors import ErrorCode, IpcError, MessageTooLarge, SerializationError, peer_repr
from . import codec
from .buffers import ENVELOPE_KEY, INLINE, BufferPlacer, BufferResolver, decode_buffers
from .buffers import encode_buffers as _encode_buffers

__all__ = ["IpcMessage", "IpcMessageType", "new_message_id"]


class IpcMessageType(str, Enum):
    """The ``type`` field. A ``str`` enum: ``IpcMessageType.PING == "ping"``.

    Usage::

        if msg.type is IpcMessageType.EVENT:
            handle_event(msg.event, msg.data)
    """

    REQUEST = "request"
    RESPONSE = "response"
    EVENT = "event"
    PING = "ping"
    PONG = "pong"
    DATA = "data"
    HELLO = "hello"
    READY = "ready"
    BYE = "bye"
    RELEASE = "release"


_TYPES: dict[str, IpcMessageType] = {t.value: t for t in IpcMessageType}

# Ids are unique per process and cheap: a random prefix plus a counter.
_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def new_message_id() -> str:
    """A fresh message id, unique within this process and across processes."""
    return f"{_ID_PREFIX}-{next(_id_counter)}"


class IpcMessage:
    """One protocol message. Absent fields are ``None`` and are not sent.

    Build messages with the class methods (``request``, ``response``,
    ``error_response``, ``event_message``, ``ping``, ...) or the constructor.

    Usage::

        request = IpcMessage.request("scene.info", {"verbose": True})
        reply = IpcMessage.response(request.id, {"nodes": 42})
        IpcMessage.from_json(reply.to_bytes()).data      # {'nodes': 42}
    """

    __slots__ = ("data", "error", "event", "id", "method", "type")

    def __init__(
        self,
        type: IpcMessageType | str,
        data: Any = None,
        id: Optional[str] = None,
        method: Optional[str] = None,
        event: Optional[str] = None,
        error: Optional[IpcError] = None,
    ) -> None:
        msg_type = _TYPES.get(type) if isinstance(type, str) else None
        if msg_type is None:
            raise SerializationError(f"unknown message type {type!r}")
        self.type = msg_type
        self.data = {} if data is None else data
        self.id = id
        self.method = method
        self.event = event
        self.error = error

    @classmethod
    def _make(
        cls,
        msg_type: IpcMessageType,
        data: Any,
        msg_id: Optional[str] = None,
        method: Optional[str] = None,
        event: Optional[str] = None,
        error: Optional[IpcError] = None,
    ) -> IpcMessage:
        # The constructor without its checks, for callers whose type is already
        # an IpcMessageType: the hot paths (decode, events, requests) use it.
        msg = cls.__new__(cls)
        msg.type = msg_type
        msg.data = {} if data is None else data
        msg.id = msg_id
        msg.method = method
        msg.event = event
        msg.error = error
        return msg

    # -- constructors ------------------------------------------------------

    @classmethod
    def request(cls, method: str, data: Any = None, id: Optional[str] = None) -> IpcMessage:
        return cls._make(_REQUEST, data, id or new_message_id(), method)

    @classmethod
    def response(cls, id: Optional[str], data: Any = None) -> IpcMessage:
        return cls._make(_RESPONSE, data, id)

    @classmethod
    def error_response(
        cls, id: Optional[str], code: int, message: str, data: Any = None
    ) -> IpcMessage:
        return cls._make(_RESPONSE, None, id, error=IpcError(code, message, data))

    @classmethod
    def event_message(cls, event: str, data: Any = None) -> IpcMessage:
        return cls._make(_EVENT, data, event=event)

    @classmethod
    def data_message(cls, data: Any) -> IpcMessage:
        return cls._make(IpcMessageType.DATA, data)

    @classmethod
    def ping(cls, id: Optional[str] = None) -> IpcMessage:
        return cls._make(IpcMessageType.PING, None, id or new_message_id())

    @classmethod
    def pong(cls, id: Optional[str]) -> IpcMessage:
        return cls._make(IpcMessageType.PONG, None, id)

    # -- encoding ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The wire object: absent (``None``) fields are left out."""
        # ``type`` goes in as the enum member: it is a str, and both JSON
        # encoders write a str subclass as its value.
        out: dict[str, Any] = {"type": self.type}
        if self.id is not None:
            out["id"] = self.id
        if self.method is not None:
            out["method"] = self.method
        if self.event is not None:
            out["event"] = self.event
        if self.data is not None:
            out["data"] = self.data
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out

    def to_bytes(self, placer: Optional[BufferPlacer] = None) -> bytes:
        """UTF-8 JSON without the frame's trailing newline.

        Buffers in ``data`` or ``error.data`` become descriptors placed by
        ``placer`` (inline base64 by default; see :mod:`.buffers`)."""
        try:
            return codec.dumps(self.to_dict())
        except codec.EncodeError as exc:
            return _frame_with_buffers(self.to_dict(), placer, exc, codec.dumps)

    def to_frame(self, placer: Optional[BufferPlacer] = None) -> bytes:
        """UTF-8 JSON with the frame's trailing newline (see ``framing.encode_frame``)."""
        try:
            return _dumps_line(self.to_dict())
        except codec.EncodeError as exc:
            # Only here, where the codec refused something: a message without buffers
            # never pays for looking for them.
            return _frame_with_buffers(self.to_dict(), placer, exc, _dumps_line)

    @staticmethod
    def event_frame(event: str, data: Any = None, placer: Optional[BufferPlacer] = None) -> bytes:
        """The frame of ``event_message(event, data)``, encoded without building the message.

        ``emit`` on the socket transports uses it: an event stream's hot path.
        """
        obj = {"type": _EVENT, "event": event, "data": {} if data is None else data}
        try:
            return _dumps_line(obj)
        except codec.EncodeError as exc:
            return _frame_with_buffers(obj, placer, exc, _dumps_line)

    def to_json(self) -> str:
        return self.to_bytes().decode("utf-8")

    @classmethod
    def from_dict(cls, obj: Any, resolver: Optional[BufferResolver] = None) -> IpcMessage:
        """Validate a decoded JSON value; raises ``SerializationError`` (-32600).

        A message with a ``buffers`` field has its descriptors turned into buffers
        (``resolver``: the connection's, for shared memory; -32602 for a bad one)."""
        try:
            msg_type = _TYPES[obj["type"]]
        except (KeyError, TypeError, IndexError):
            msg_type = None
        get = obj.get if obj.__class__ is dict else None
        if msg_type is None or get is None:
            _check(obj)  # raises, or passes a valid dict subclass
            msg_type, get = _TYPES[obj["type"]], obj.get
        msg_id, method, event = get("id"), get("method"), get("event")
        # One test for the common, well-formed case: each field an exact str or absent.
        if (
            (msg_id is not None and msg_id.__class__ is not str)
            or (method is not None and method.__class__ is not str)
            or (event is not None and event.__class__ is not str)
            or (method is None and msg_type is _REQUEST)
            or (event is None and msg_type is _EVENT)
        ):
            _check(obj)  # raises, or passes str subclasses
        error, data, buffers = get("error"), get("data"), get(ENVELOPE_KEY)
        if buffers is not None:
            try:
                data = decode_buffers(data, error, buffers, resolver)
            except SerializationError as exc:
                if msg_type is _RESPONSE and msg_id is not None:
                    # The caller is here, not there: its request fails with the reason.
                    return cls._make(msg_type, None, msg_id, error=IpcError(exc.code, str(exc)))
                exc.message_id = msg_id
                raise
        if error is not None:
            try:
                error = IpcError.from_dict(error)
            except SerializationError as exc:
                exc.message_id = msg_id
                raise
        return cls._make(msg_type, data, msg_id, method, event, error)

    @classmethod
    def from_json(
        cls, raw: bytes | bytearray | memoryview | str, resolver: Optional[BufferResolver] = None
    ) -> IpcMessage:
        """Decode one frame (without or with its newline); raises ``SerializationError``."""
        try:
            obj = codec.loads(raw)
        except codec.DecodeError as exc:
            raise SerializationError(f"not valid JSON: {exc}", ErrorCode.PARSE_ERROR) from exc
        return cls.from_dict(obj, resolver)

    from_bytes = from_json

    # -- helpers -----------------------------------------------------------

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IpcMessage):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        # Bounded: a message's fields come from the peer and end up in logs.
        fields = ", ".join(f"{k}={peer_repr(v)}" for k, v in self.to_dict().items() if k != "type")
        return f"IpcMessage({self.type.value}{', ' if fields else ''}{fields})"


_REQUEST = IpcMessageType.REQUEST
_RESPONSE = IpcMessageType.RESPONSE
_EVENT = IpcMessageType.EVENT
_dumps_line = codec.dumps_line


def _encode_error(kind: str, exc: Exception) -> SerializationError:
    """What ``to_bytes``/``to_frame``/``event_frame`` raise for data that is not JSON."""
    return SerializationError(f"cannot encode {kind} message: {exc}", ErrorCode.INTERNAL_ERROR)


def _frame_with_buffers(
    obj: dict[str, Any],
    placer: Optional[BufferPlacer],
    exc: Exception,
    dumps: Any,
) -> bytes:
    """``obj`` encoded with its buffers as descriptors; the codec's error if it has none."""
    kind = str(obj["type"].value if isinstance(obj["type"], IpcMessageType) else obj["type"])
    placer = INLINE if placer is None else placer
    bodies: list[dict[str, Any]] = []
    try:
        if "data" in obj:
            obj["data"], placed = _encode_buffers(obj["data"], placer)
            bodies.extend(placed)
        error = obj.get("error")
        if isinstance(error, dict) and "data" in error:
            error["data"], placed = _encode_buffers(error["data"], placer)
            bodies.extend(placed)
        if bodies:
            obj[ENVELOPE_KEY] = len(bodies)
            frame: bytes = dumps(obj)
    except codec.EncodeError as again:
        if bodies:
            placer.take_back(bodies)
        raise _encode_error(kind, again) from again
    except BaseException:
        if bodies:
            placer.take_back(bodies)
        raise
    if not bodies:
        raise _encode_error(kind, exc) from exc
    max_frame = placer.max_frame
    if max_frame is not None and len(frame) > max_frame + 1:
        placer.take_back(bodies)
        raise MessageTooLarge(
            f"{kind} message of {len(frame) - 1} bytes exceeds the {max_frame}-byte limit"
        )
    return frame


def _check(obj: Any) -> None:
    """Raise ``SerializationError`` saying why ``obj`` is not a message (the slow path)."""
    if not isinstance(obj, dict):
        raise SerializationError(f"a message must be a JSON object, not {_kind(obj)}")
    raw_id = obj.get("id")
    msg_id = raw_id if isinstance(raw_id, str) else None
    raw_type = obj.get("type")
    if not isinstance(raw_type, str):
        reason = "missing field 'type'" if raw_type is None else "field 'type' must be a string"
        raise SerializationError(reason, message_id=msg_id)
    if raw_type not in _TYPES:
        raise SerializationError(f"unknown message type {peer_repr(raw_type)}", message_id=msg_id)
    if raw_id is not None and msg_id is None:
        raise SerializationError("field 'id' must be a string")
    for field in ("method", "event"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            raise SerializationError(f"field {field!r} must be a string", message_id=msg_id)
    if raw_type == "request" and obj.get("method") is None:
        raise SerializationError("a request needs a string 'method'", message_id=msg_id)
    if raw_type == "event" and obj.get("event") is None:
        raise SerializationError("an event needs a string 'event'", message_id=msg_id)


def _kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "an array"
    if obj is None:
        return "null"
    return f"a {type(obj).__name__}"
