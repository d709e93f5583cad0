"""Buffers as JSON values: descriptors, escaping, the inline form (PROTOCOL.md, "Buffers (1.1)").

Any object with the buffer protocol (``bytes``, ``bytearray``, ``memoryview``,
``array.array``, a numpy array; never ``str``) may stand wherever a JSON value
may, nested too. On the wire each one becomes a descriptor,
``{"$buffer": {...}}``, and the message gets a top-level ``"buffers": N`` so a
receiver walks only messages that carry some. Plain messages never come here:
the codec refuses a buffer, and only then is the message encoded again by
:func:`encode_buffers` (nothing is paid by messages without buffers).

Where a buffer's bytes go is the sender's :class:`BufferPlacer`'s choice: inline
base64 (:data:`INLINE`, what every peer understands) or a shared-memory block
(``aurora_dcc.transport.shared_memory``). The receiving side turns descriptors
back into values with :func:`decode_buffers`: inline ones here, the others
through the connection's :class:`BufferResolver`.

Usage::

    obj, bodies = encode_buffers({"points": array.array("f", [1.0, 2.0])}, INLINE)
    # obj == {"points": {"$buffer": {"format": "f", "shape": [2], "data": "AACAPwAAAEA="}}}
    decode_buffers(obj, None, len(bodies), None, BufferSettings(numpy=False))["points"].tolist()
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, replace
from typing import Any, Optional

from ..errors import ChannelTimeout, ErrorCode, SerializationError
from .buffer_values import as_received

__all__ = [
    "BUFFER_KEY",
    "ENVELOPE_KEY",
    "INLINE",
    "BlocksExhausted",
    "BufferPlacer",
    "BufferResolver",
    "BufferSettings",
    "buffer_settings",
    "configure_buffers",
    "decode_buffers",
    "encode_buffers",
]

BUFFER_KEY = "$buffer"
"""The one key of a descriptor object."""

ENVELOPE_KEY = "buffers"
"""The top-level field that says how many descriptors a message carries."""


@dataclass(frozen=True)
class BufferSettings:
    """How a connection sends and receives buffers (see docs/buffers.md).

    ``threshold``: a buffer of this many bytes or more goes through shared memory
    when the peer accepts it; smaller ones go inline. ``zero_copy``: received
    shared-memory buffers are read-only views into the sender's block, lent until
    ``release_buffers`` (else they are copied out and the block returned at once).
    ``numpy``: received buffers as numpy arrays (``None``: when numpy can be
    imported). ``shared_memory``: offer and accept shared memory at all.
    ``max_shared_bytes``: the sender's blocks per connection (the bound).
    ``wait_timeout``: seconds a send waits for the receiver to return blocks.

    Usage::

        configure_buffers(threshold=1 << 20)             # this process's default
        channel.set_buffer_settings(BufferSettings(zero_copy=True))
    """

    threshold: int = 64 * 1024
    zero_copy: bool = False
    numpy: Optional[bool] = None
    shared_memory: bool = True
    max_shared_bytes: int = 1 << 30
    wait_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.max_shared_bytes < 1 or self.wait_timeout < 0:
            raise ValueError(f"invalid buffer settings: {self}")


_settings = BufferSettings()


def buffer_settings() -> BufferSettings:
    """The process's default settings (what a new connection starts with)."""
    return _settings


def configure_buffers(**changes: Any) -> BufferSettings:
    """Change the process's default :class:`BufferSettings` (fields by name); returns them.

    Connections made afterwards use them; ``StreamChannel.set_buffer_settings``
    changes one connection.
    """
    global _settings
    _settings = replace(_settings, **changes)
    return _settings


class BlocksExhausted(ChannelTimeout):
    """A send found every shared-memory block the connection may have lent to a receiver
    that did not return them within ``wait_timeout`` (or a broadcast found none free)."""


class BufferPlacer:
    """Where a sender puts a buffer's bytes: returns the descriptor's body.

    The base class places everything inline (base64). A connection's placer
    (shared memory) overrides ``place`` and ``take_back``.

    Usage::

        body = INLINE.place(memoryview(b"abc"), "B", [3])   # {'format': 'B', ..., 'data': 'YWJj'}
    """

    max_frame: Optional[int] = None
    """The frame limit the placer checks before lending anything (``None``: not checked)."""

    def place(self, raw: memoryview, fmt: str, shape: list[int]) -> dict[str, Any]:
        """The descriptor body for ``raw`` (C-contiguous bytes, format 'B')."""
        return inline_body(raw, fmt, shape)

    def take_back(self, bodies: list[dict[str, Any]]) -> None:
        """The message with these bodies was not sent: reclaim what they hold."""


INLINE = BufferPlacer()
"""The placer of every peer without shared memory: base64 in the JSON."""


def inline_body(raw: memoryview, fmt: str, shape: list[int]) -> dict[str, Any]:
    """The inline descriptor body: format, shape and base64 data."""
    return {"format": fmt, "shape": shape, "data": binascii.b2a_base64(raw, newline=False).decode()}


class BufferResolver:
    """The receiving side of a connection: turns shared-memory descriptors into values.

    Usage::

        class Resolver(BufferResolver):
            def resolve_shared(self, body):
                return copy_out_of_block(body)
    """

    settings: BufferSettings = _settings

    def resolve_shared(self, body: dict[str, Any]) -> Any:
        """A value for a descriptor body naming a shared-memory block.

        Raises ``SerializationError`` (-32602) for a bad one."""
        raise SerializationError(
            "a shared-memory buffer arrived on a connection that did not offer it",
            ErrorCode.INVALID_PARAMS,
        )

    def message_done(self) -> None:
        """The message being decoded is done (or failed): hand back what is owed."""


# -- sending ----------------------------------------------------------------

_NATIVE_SIZED = {"l": "qi", "L": "QI", "n": "qi", "N": "QI", "P": "QI"}
"""Native-size formats, sent with the standard size they have here (8 or 4 bytes)."""


def _wire_format(view: memoryview) -> str:
    fmt = view.format
    if fmt[:1] == "@":
        fmt = fmt[1:]
    sized = _NATIVE_SIZED.get(fmt)
    if sized is not None:
        fmt = sized[0] if view.itemsize == 8 else sized[1]
    return fmt


def _raw_bytes(view: memoryview) -> memoryview:
    """``view``'s bytes, C order, as a flat 'B' view (a copy only where it must be)."""
    if view.c_contiguous:
        try:
            return view.cast("B")
        except (TypeError, ValueError):  # a format cast refuses (explicit byte order, ...)
            pass
    return memoryview(view.tobytes())


class _Encoder:
    __slots__ = ("bodies", "placer")

    def __init__(self, placer: BufferPlacer) -> None:
        self.placer = placer
        self.bodies: list[dict[str, Any]] = []

    def walk(self, value: Any) -> Any:
        cls = value.__class__
        if cls is str or cls is int or cls is float or cls is bool or value is None:
            return value
        if isinstance(value, dict):
            walk = self.walk
            return {
                (("$" + key) if isinstance(key, str) and key[:1] == "$" else key): walk(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.walk(item) for item in value]
        if isinstance(value, (str, int, float)):
            return value
        try:
            view = memoryview(value)
        except (TypeError, ValueError):  # not a buffer (or one numpy cannot export)
            return value
        with view:
            body = self.placer.place(_raw_bytes(view), _wire_format(view), list(view.shape or ()))
        self.bodies.append(body)
        return {BUFFER_KEY: body}


def encode_buffers(value: Any, placer: BufferPlacer) -> tuple[Any, list[dict[str, Any]]]:
    """``value`` with each buffer replaced by its descriptor and ``$`` keys escaped.

    Returns the new value and the descriptor bodies placed (empty: ``value`` held
    no buffer). If it raises, whatever was placed is taken back.
    """
    encoder = _Encoder(placer)
    try:
        return encoder.walk(value), encoder.bodies
    except BaseException:
        if encoder.bodies:
            placer.take_back(encoder.bodies)
        raise


# -- receiving ----------------------------------------------------------------


def _bad(text: str) -> SerializationError:
    return SerializationError(f"bad buffer descriptor: {text}", ErrorCode.INVALID_PARAMS)


def flat_shape(fmt: str, nbytes: int) -> list[int]:
    """The shape of a descriptor without one: one dimension of whole items."""
    try:
        itemsize = struct.calcsize(fmt)
    except struct.error:
        return [nbytes]
    return [nbytes // itemsize] if itemsize and not nbytes % itemsize else [nbytes]


def check_layout(body: Any) -> tuple[str, Optional[list[int]], int]:
    """A descriptor body's format, shape (``None``: absent) and byte count (format size
    x shape; -1 where that is not known)."""
    if not isinstance(body, dict):
        raise _bad("'$buffer' must hold an object")
    fmt, shape = body.get("format", "B"), body.get("shape")
    if not isinstance(fmt, str) or not 0 < len(fmt) <= 64:
        raise _bad("'format' must be a short string")
    try:
        itemsize = struct.calcsize(fmt)
    except struct.error:
        itemsize = -1  # a format struct does not know (numpy's complex, ...): not checked
    if shape is None:
        return fmt, None, -1
    if not isinstance(shape, list) or len(shape) > 64:
        raise _bad("'shape' must be a list of at most 64 sizes")
    count = 1
    for size in shape:
        if size.__class__ is not int or size < 0:
            raise _bad("'shape' must hold non-negative integers")
        count *= size
    return fmt, shape, count * itemsize if itemsize >= 0 else -1


class _Decoder:
    __slots__ = ("count", "resolver", "settings")

    def __init__(self, resolver: Optional[BufferResolver], settings: BufferSettings) -> None:
        self.resolver = resolver
        self.settings = settings
        self.count = 0

    def walk(self, value: Any) -> Any:
        cls = value.__class__
        if cls is list:
            walk = self.walk
            for index, item in enumerate(value):
                if item.__class__ is dict or item.__class__ is list:
                    value[index] = walk(item)
            return value
        if cls is not dict:
            return value
        if len(value) == 1 and BUFFER_KEY in value:
            self.count += 1
            return self.buffer(value[BUFFER_KEY])
        if any(key[:1] == "$" for key in value):
            value = {(key[1:] if key[:2] == "$$" else key): item for key, item in value.items()}
        walk = self.walk
        for key, item in value.items():
            if item.__class__ is dict or item.__class__ is list:
                value[key] = walk(item)
        return value

    def buffer(self, body: Any) -> Any:
        fmt, shape, nbytes = check_layout(body)
        if "data" not in body:
            if nbytes >= 0 and body.get("nbytes") != nbytes:
                raise _bad(f"'nbytes' is not {nbytes} bytes for shape {shape} of {fmt!r}")
            resolver = self.resolver
            if resolver is None:
                resolver = BufferResolver()
            return resolver.resolve_shared(body)
        text = body["data"]
        if not isinstance(text, str):
            raise _bad("'data' must be a base64 string")
        try:
            raw = base64.b64decode(text, validate=True)  # a2b_base64 skips bad characters
        except (binascii.Error, ValueError) as exc:
            raise _bad(f"'data' is not base64 ({exc})") from None
        if nbytes >= 0 and len(raw) != nbytes:
            raise _bad(f"{len(raw)} bytes of data for shape {shape} of {fmt!r}")
        if shape is None:
            shape = flat_shape(fmt, len(raw))
        return as_received(bytearray(raw), fmt, shape, self.settings.numpy)


def decode_buffers(
    data: Any,
    error: Any,
    count: Any,
    resolver: Optional[BufferResolver],
    settings: Optional[BufferSettings] = None,
) -> Any:
    """``data`` (decoded JSON, changed in place) with its descriptors made buffers,
    and those of ``error["data"]`` when ``error`` is an object (changed in place).

    ``count`` is the message's ``"buffers"`` field: it must match the descriptors
    found. Raises ``SerializationError`` (-32600 for a wrong count, -32602 for a
    bad descriptor); the resolver is told ``message_done`` either way.
    """
    if settings is None:
        settings = resolver.settings if resolver is not None else _settings
    decoder = _Decoder(resolver, settings)
    try:
        out = decoder.walk(data)
        if isinstance(error, dict) and "data" in error:
            error["data"] = decoder.walk(error["data"])
        if count.__class__ is not int or count != decoder.count:
            raise SerializationError(
                f"the message says it carries {count!r} buffers and holds {decoder.count}"
            )
        return out
    finally:
        if resolver is not None:
            resolver.message_done()
