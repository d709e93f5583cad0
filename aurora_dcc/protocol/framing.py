"""Newline-delimited JSON framing (docs/PROTOCOL.md, "Framing").

``FrameDecoder`` turns a byte stream into frames: it keeps partial frames
across reads, returns every complete frame of a read, accepts ``\\r\\n``,
skips empty lines, and refuses a frame longer than ``max_frame`` as soon as it
is known to be too long, without buffering it whole.

Usage::

    decoder = FrameDecoder(max_frame=16 * 1024 * 1024)
    for frame in decoder.feed(sock.recv(65536)):
        msg = IpcMessage.from_json(frame)
    if decoder.overflowed:
        ...  # answer -32004 and close the connection
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import MessageTooLarge
from .buffers import BufferPlacer
from .message import IpcMessage

__all__ = ["DEFAULT_MAX_FRAME", "FrameDecoder", "encode_event", "encode_frame"]

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""The protocol's default frame limit: 16 MiB."""


def encode_frame(
    msg: IpcMessage, max_frame: int = DEFAULT_MAX_FRAME, placer: Optional[BufferPlacer] = None
) -> bytes:
    """``msg`` as one frame (JSON + ``\\n``); raises ``MessageTooLarge`` over ``max_frame``.

    Checking on the sending side turns an oversized message into an error for
    the caller instead of a closed connection for everyone. ``placer``: where
    buffers in the message go (the connection's; inline base64 by default).
    """
    frame = msg.to_frame(placer)
    if len(frame) > max_frame + 1:  # + 1: the newline
        raise _too_large(msg.type.value, frame, max_frame)
    return frame


def encode_event(
    event: str,
    data: Any,
    max_frame: int = DEFAULT_MAX_FRAME,
    placer: Optional[BufferPlacer] = None,
) -> bytes:
    """``IpcMessage.event_message(event, data)`` as one frame, as ``encode_frame`` does
    (without building the message: ``emit``'s fast path)."""
    frame = IpcMessage.event_frame(event, data, placer)
    if len(frame) > max_frame + 1:
        raise _too_large("event", frame, max_frame)
    return frame


def _too_large(kind: str, frame: bytes, max_frame: int) -> MessageTooLarge:
    # Built only on failure: even an enum's ``.value`` is a cost per message.
    return MessageTooLarge(
        f"{kind} message of {len(frame) - 1} bytes exceeds the {max_frame}-byte limit"
    )


class FrameDecoder:
    """Incremental splitter of a byte stream into frames (see module docstring).

    After ``overflowed`` becomes true the decoder returns nothing more: the
    connection is to be answered with -32004 and closed.

    Usage::

        decoder = FrameDecoder(max_frame=1024)
        decoder.feed(b'{"type":"ping","id":"1"}\n{"ty')   # [b'{"type":"ping","id":"1"}']
        decoder.feed(b'pe":"pong","id":"1"}\n')          # [b'{"type":"pong","id":"1"}']
    """

    __slots__ = ("_partial", "max_frame", "overflowed")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, not {max_frame}")
        self.max_frame = max_frame
        self.overflowed = False
        self._partial = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the frames it completes (without line endings)."""
        if self.overflowed:
            return []
        partial = self._partial
        if not partial and data[-1:] == b"\n":
            # The common read: whole frames only.
            lines = data.split(b"\n")
            del lines[-1]  # the empty tail after the last newline
        else:
            if b"\n" not in data:
                partial += data
                if len(partial) > self.max_frame:
                    self._overflow()
                return []
            if partial:
                partial += data
                data = bytes(partial)
                partial.clear()
            lines = data.split(b"\n")
            partial += lines.pop()
        # Per-line work only where it is needed: most reads have no \r, no
        # empty line, and are shorter than the limit altogether.
        if b"\r" in data:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        if b"" in lines:
            lines = [line for line in lines if line]
        limit = self.max_frame
        if len(data) > limit:
            for index, line in enumerate(lines):
                if len(line) > limit:
                    self._overflow()
                    return lines[:index]
        if len(partial) > limit:
            self._overflow()
        return lines

    def _overflow(self) -> None:
        self.overflowed = True
        self._partial = bytearray()

    def error(self) -> MessageTooLarge:
        """The exception describing an overflow (for logs and error replies)."""
        return MessageTooLarge(f"frame exceeds the {self.max_frame}-byte limit")
