"""Fake ``maya.utils``: ``executeDeferred`` runs on the main thread when Maya is idle."""

from __future__ import annotations

from typing import Any, Callable

from fake_main_thread import later


def executeDeferred(fn: Callable[..., Any], *args: Any) -> None:  # any thread, as in Maya
    later(fn, *args)
