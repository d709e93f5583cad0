"""The wire protocol (docs/PROTOCOL.md), with no I/O: the lowest layer above ``errors``.

- :mod:`.message`: ``IpcMessage`` and ``IpcMessageType`` (every message
  kind), to and from their JSON form; ``new_message_id``.
- :mod:`.codec`: JSON encoding (orjson when installed, else ``json``).
- :mod:`.framing`: NDJSON frames: ``encode_frame`` and ``FrameDecoder`` (a
  byte stream in, complete frames out, with the frame limit).
- :mod:`.handshake`: ``PROTOCOL_VERSION``, the ``hello`` and ``ready``
  messages, and the checks a server makes on a ``hello``.
"""

from __future__ import annotations

from .handshake import PROTOCOL_VERSION
from .message import IpcMessage, IpcMessageType

__all__ = ["PROTOCOL_VERSION", "IpcMessage", "IpcMessageType"]
