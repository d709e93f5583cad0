"""Buffers in the command's output: ``call ... --out FILE`` and the summaries printed instead.

A result may hold buffers (``mesh.points`` returns one) wherever a JSON value
may stand; they arrive as ``memoryview`` objects or numpy arrays. JSON cannot
print them, so every buffer in a printed result or event is shown as a short
summary in its place::

    {"$buffer": {"format": "f", "shape": [1000, 3], "nbytes": 12000}}

``--out FILE`` writes the raw bytes of the result's one buffer to FILE (C
order, no header: format and shape are in the printed summary, with
``"saved": FILE``). A result with no buffer, or with several, writes
nothing and fails with an error that names where the buffers are
(``$.points``, ``$.frames[2]``); the result is printed all the same.

Usage::

    show_call_result(result, "points.f32", print_json)  # call ... --out points.f32
    json.dumps(event, default=buffer_summary)           # what `listen` prints
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Optional

from .exit_codes import CliError, ExitCode

__all__ = [
    "buffer_paths",
    "buffer_summary",
    "save_single_buffer",
    "show_call_result",
    "summarize_buffers",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _as_view(value: Any) -> Any:
    """A ``memoryview`` of ``value`` if it is a buffer (never for JSON's own types), else None."""
    if value is None or isinstance(value, (str, int, float, bool, dict, list, tuple)):
        return None
    try:
        return memoryview(value)
    except TypeError:
        return None


def buffer_summary(value: Any) -> dict[str, Any]:
    """``{"$buffer": {"format", "shape", "nbytes"}}`` for a buffer (``json.dumps``'s ``default``).

    Raises ``TypeError`` for anything else, as ``json.dumps`` expects.
    """
    view = _as_view(value)
    if view is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    with view:
        return {
            "$buffer": {"format": view.format, "shape": list(view.shape), "nbytes": view.nbytes}
        }


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if _IDENTIFIER.fullmatch(text) else f"{path}[{json.dumps(text)}]"


def _buffers(value: Any, path: str) -> list[tuple[str, Any]]:
    """Every buffer in ``value`` with its path, in order."""
    if isinstance(value, dict):
        return [
            found for key, item in value.items() for found in _buffers(item, _child_path(path, key))
        ]
    if isinstance(value, (list, tuple)):
        return [
            found for i, item in enumerate(value) for found in _buffers(item, _child_path(path, i))
        ]
    view = _as_view(value)
    if view is None:
        return []
    view.release()
    return [(path, value)]


def buffer_paths(value: Any) -> list[str]:
    """Where ``value`` holds buffers, as paths (``$`` is ``value`` itself), in order."""
    return [path for path, _ in _buffers(value, "$")]


def summarize_buffers(value: Any, saved: Any = None, saved_to: str = "") -> Any:
    """``value`` with every buffer replaced by its :func:`buffer_summary` (JSON only).

    The summary of the buffer that is ``saved`` also says ``"saved": saved_to``.
    """
    if isinstance(value, dict):
        return {key: summarize_buffers(item, saved, saved_to) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [summarize_buffers(item, saved, saved_to) for item in value]
    if _as_view(value) is None:
        return value
    summary = buffer_summary(value)
    if value is saved:
        summary["$buffer"]["saved"] = saved_to
    return summary


def _write(buffer: Any, path: str) -> None:
    """The raw bytes of ``buffer``, C order, into a new file at ``path``."""
    with memoryview(buffer) as view:
        try:
            data: Any = view.cast("B") if view.c_contiguous else view.tobytes()
        except TypeError:  # a format that cannot be cast (explicit byte order)
            data = view.tobytes()
        with open(path, "wb") as out:
            out.write(data)


def save_single_buffer(result: Any, path: str) -> Any:
    """Write the raw bytes of ``result``'s one buffer to ``path``; the result to print.

    The printed result shows the buffer's summary with ``"saved": path``.
    Raises :class:`CliError` (nothing written) when ``result`` holds no buffer
    or several (naming their paths), or when the file cannot be written.
    """
    found = _buffers(result, "$")
    if len(found) != 1:
        where = f" (at {', '.join(p for p, _ in found)})" if found else ""
        raise CliError(
            ExitCode.CALL_FAILED,
            f"--out saves one buffer: the result holds {len(found)}{where}; nothing written",
        )
    buffer = found[0][1]
    try:
        _write(buffer, path)
    except OSError as exc:
        raise CliError(ExitCode.CALL_FAILED, f"cannot write {path}: {exc}") from exc
    return summarize_buffers(result, buffer, path)


def show_call_result(result: Any, out: Optional[str], show: Callable[[Any], None]) -> None:
    """``call``'s output: ``show`` the result with buffers summarized; with ``out``, save first.

    When the buffer cannot be saved the result is shown all the same (nothing
    the host sent is lost from view), then the :class:`CliError` is raised.
    """
    if out is None:
        show(summarize_buffers(result))
        return
    try:
        shown = save_single_buffer(result, out)
    except CliError:
        show(summarize_buffers(result))
        raise
    show(shown)
