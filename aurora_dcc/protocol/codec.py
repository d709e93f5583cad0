"""JSON encoding for the wire, decided once at import.

orjson is used when it can be imported (it is several times faster); a DCC's
own Python may not have it, so the standard library's ``json`` is the
fallback. Both produce compact UTF-8 with newlines escaped, which is what the
newline-delimited framing in docs/PROTOCOL.md relies on, and both refuse the
same inputs: lone surrogates (``"\\ud800"``), ``NaN``/``Infinity``, and integers
outside [``INT_MIN``, ``INT_MAX``] (orjson alone would round those to floats).

Usage::

    from aurora_dcc.protocol import codec as codec
    raw = codec.dumps({"type": "ping"})    # bytes
    obj = codec.loads(raw)                 # {'type': 'ping'}
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = [
    "BACKEND",
    "INT_MAX",
    "INT_MIN",
    "DecodeError",
    "EncodeError",
    "dumps",
    "dumps_line",
    "loads",
]

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

INT_MIN = -(2**63)
"""The smallest integer the wire carries (docs/PROTOCOL.md, "Clarifications (1.1)")."""

INT_MAX = 2**64 - 1
"""The largest integer the wire carries: outside [INT_MIN, INT_MAX] is refused, not rounded."""

# A run of 19 digits is the shortest text that can hold an integer out of range:
# only frames with one pay for the exact check (orjson would turn it into a float).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGIT_RUN = b"0" * 19


def _ranged_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"integer {text[:40]} is outside the 64-bit range the protocol carries")
    return value


def _check_int_range(raw: bytes) -> None:
    """Raise ``ValueError`` if the JSON text ``raw`` holds an integer out of range."""
    json.loads(raw, parse_int=_ranged_int)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _as_bytes(raw: bytes | bytearray | memoryview | str) -> bytes:
    # strict: a str with lone surrogates raises UnicodeEncodeError (a ValueError)
    return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)


_json_decoder = json.JSONDecoder(parse_constant=_refuse_constant)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is missing

    def _json_dumps(obj: Any) -> bytes:
        out = _encoder.encode(obj).encode("utf-8")  # lone surrogates raise here
        if _LONG_DIGIT_RUN in out.translate(_DIGITS_AS_ZERO):
            _check_int_range(out)
        return out

    def _json_loads(raw: bytes | bytearray | memoryview | str) -> Any:
        data = raw if isinstance(raw, bytes) else _as_bytes(raw)
        text = data.decode("utf-8")  # strict: invalid UTF-8 raises
        obj = _json_decoder.decode(text)
        if "\\u" in text:
            # json accepts "\\ud800" escapes; orjson and UTF-8 do not: re-encoding finds them
            try:
                _encoder.encode(obj).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone surrogate escape") from None
        if _LONG_DIGIT_RUN in data.translate(_DIGITS_AS_ZERO):
            _check_int_range(data)
        return obj

    def _json_dumps_line(obj: Any) -> bytes:
        return _json_dumps(obj) + b"\n"

    BACKEND = "json"
    dumps = _json_dumps
    dumps_line = _json_dumps_line
    loads = _json_loads
    DecodeError = (ValueError, RecursionError)
    EncodeError = (TypeError, ValueError, RecursionError)
else:
    _orjson_loads = orjson.loads

    def _orjson_dumps_line(obj: Any) -> bytes:
        # A plain function: faster to call than functools.partial with the option.
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)

    def _orjson_checked_loads(raw: bytes | bytearray | memoryview | str) -> Any:
        data = raw if isinstance(raw, bytes) else _as_bytes(raw)
        obj = _orjson_loads(data)
        if _LONG_DIGIT_RUN in data.translate(_DIGITS_AS_ZERO):
            _check_int_range(data)
        return obj

    BACKEND = "orjson"
    dumps = orjson.dumps
    dumps_line = _orjson_dumps_line
    loads = _orjson_checked_loads
    DecodeError = (orjson.JSONDecodeError, ValueError, RecursionError)
    EncodeError = (orjson.JSONEncodeError, TypeError, ValueError, RecursionError)
