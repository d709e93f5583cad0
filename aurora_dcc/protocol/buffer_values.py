"""What a receiver holds for a buffer: a memoryview or a numpy array, and its lease.

``as_received`` gives received bytes their format and shape back, as a numpy
array when numpy can be imported (never imported before the first buffer
arrives) or else as a ``memoryview``. A zero-copy value lent from a sender's
shared-memory block is registered with its :class:`BufferLease`;
``release_buffers`` ends the leases of every such value nested in what it is
given (docs/buffers.md).

Usage::

    view = as_received(bytearray(8), "f", [2], numpy=False)   # memoryview, format 'f'
    release_buffers({"points": view})                          # 0: nothing was lent
"""

from __future__ import annotations

import array
import contextlib
import importlib
import re
import threading
import weakref
from typing import Any, Optional

__all__ = ["BufferLease", "as_received", "lend", "release_buffers"]

_numpy: Any = None  # the module once looked for; False where it cannot be imported
_numpy_lock = threading.Lock()


def _numpy_module(wanted: Optional[bool]) -> Any:
    global _numpy
    if wanted is False:
        return None
    if _numpy is None:
        with _numpy_lock:
            if _numpy is None:
                try:
                    _numpy = importlib.import_module("numpy")
                except ImportError:
                    _numpy = False
    return _numpy or None


_COMPLEX = re.compile(r"\AZ([fdg])\Z|(?<=\A[<>=!@])Z([fdg])\Z")


def _numpy_complex(match: re.Match[str]) -> str:
    """PEP 3118's complex (``Zf``) as numpy writes it (``F``)."""
    return (match.group(1) or match.group(2)).upper()


def as_received(
    raw: Any, fmt: str, shape: list[int], numpy: Optional[bool], readonly: bool = False
) -> Any:
    """``raw`` (a bytes-like object, format 'B') with format ``fmt`` and ``shape``.

    A numpy array where numpy is wanted (``numpy``: True, or ``None`` and
    importable), else a ``memoryview``. A format that cannot be expressed (a
    numpy complex or structured dtype, half floats, an empty buffer of more than
    one dimension, for a memoryview) gives the raw bytes.
    """
    np = _numpy_module(numpy)
    if np is not None:
        flat = np.frombuffer(raw, dtype=np.uint8)
        try:
            dtype = np.dtype(_COMPLEX.sub(_numpy_complex, fmt))
            return flat.view(dtype).reshape(shape)
        except (TypeError, ValueError):
            return flat
    if not len(raw) and fmt in array.typecodes and len(shape) == 1:
        return memoryview(array.array(fmt))  # memoryview casts nothing empty
    view = memoryview(raw)
    if readonly:
        view = view.toreadonly()
    cast: Any = view.cast  # typeshed knows only literal formats
    try:
        return cast(fmt, shape)
    except (TypeError, ValueError):
        return view


class BufferLease:
    """A sender's block lent to values received without a copy; ``release`` ends it.

    Usage::

        lease.release()      # returned now, or as soon as no view of the block is left
    """

    def release(self) -> None:
        """End the lease: the block goes back to its sender once nothing views it."""

    def dropped(self) -> None:
        """A value lent by this lease was garbage-collected (any thread, a finalizer)."""


_lent: dict[int, BufferLease] = {}
_lent_lock = threading.Lock()


def _collected(key: int, lease: BufferLease) -> None:
    with _lent_lock:
        if _lent.get(key) is lease:
            del _lent[key]
    lease.dropped()


def lend(value: Any, lease: BufferLease) -> Any:
    """Register ``value`` as lent by ``lease``; returns ``value``."""
    key = id(value)
    with _lent_lock:
        _lent[key] = lease
    weakref.finalize(value, _collected, key, lease)
    return value


def release_buffers(value: Any) -> int:
    """End the leases of the zero-copy buffers in ``value`` (nested); how many it ended.

    Received memoryviews are released at once (using one afterwards raises
    ``ValueError``); a block goes back to its sender as soon as nothing else views
    it (a numpy array, a slice). Copies (the default) and inline buffers hold no
    lease: for them this does nothing. Safe to call twice.
    """
    found: list[tuple[Any, BufferLease]] = []
    _find_lent(value, found, 0)
    for item, lease in found:
        if isinstance(item, memoryview):
            with contextlib.suppress(BufferError):  # still exported: the lease waits for that
                item.release()
        lease.release()
    return len(found)


def _find_lent(value: Any, found: list[tuple[Any, BufferLease]], depth: int) -> None:
    if depth > 256:
        return
    if isinstance(value, dict):
        for item in value.values():
            _find_lent(item, found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _find_lent(item, found, depth + 1)
    elif not isinstance(value, (str, int, float)) and value is not None:
        with _lent_lock:
            lease = _lent.pop(id(value), None)
        if lease is not None:
            found.append((value, lease))
