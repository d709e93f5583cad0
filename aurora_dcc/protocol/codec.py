"""JSON encoding for the wire, decided once at import.

orjson is used when it can be imported (it is several times faster); a DCC's
own Python may not have it, so the standard library's ``json`` is the
fallback. Both produce compact UTF-8 with newlines escaped, which is what the
newline-delimited framing in docs/PROTOCOL.md relies on.

Usage::

    from aurora_dcc.protocol import codec as codec
    raw = codec.dumps({"type": "ping"})    # bytes
    obj = codec.loads(raw)                 # {'type': 'ping'}
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["BACKEND", "DecodeError", "EncodeError", "dumps", "dumps_line", "loads"]

dumps: Callable[[Any], bytes]
"""Encode a JSON-able object to compact UTF-8 bytes (no trailing newline)."""

dumps_line: Callable[[Any], bytes]
"""Like ``dumps`` with the frame's ``\\n`` appended (orjson does it without a copy)."""

loads: Callable[[bytes | bytearray | memoryview | str], Any]
"""Decode UTF-8 JSON bytes or str. Raises :data:`DecodeError` on bad input."""

DecodeError: tuple[type[Exception], ...]
"""Exceptions that ``loads`` raises for bad input (catch these, not Exception)."""

EncodeError: tuple[type[Exception], ...]
"""Exceptions that ``dumps`` raises for objects that are not JSON-able."""

try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is missing
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def _json_dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode("utf-8")

    def _json_loads(raw: bytes | bytearray | memoryview | str) -> Any:
        if isinstance(raw, memoryview):
            raw = raw.tobytes()
        if not isinstance(raw, str):
            raw = bytes(raw).decode("utf-8")  # strict: invalid UTF-8 raises
        return json.loads(raw)

    def _json_dumps_line(obj: Any) -> bytes:
        return (_encoder.encode(obj) + "\n").encode("utf-8")

    BACKEND = "json"
    dumps = _json_dumps
    dumps_line = _json_dumps_line
    loads = _json_loads
    DecodeError = (ValueError, RecursionError)
    EncodeError = (TypeError, ValueError, RecursionError)
else:

    def _orjson_dumps_line(obj: Any) -> bytes:
        # A plain function: faster to call than functools.partial with the option.
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)

    BACKEND = "orjson"
    dumps = orjson.dumps
    dumps_line = _orjson_dumps_line
    loads = orjson.loads
    DecodeError = (orjson.JSONDecodeError, ValueError, RecursionError)
    EncodeError = (orjson.JSONEncodeError, TypeError, ValueError, RecursionError)
