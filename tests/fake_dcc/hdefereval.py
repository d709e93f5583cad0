"""Fake ``hdefereval``: ``executeDeferred`` runs on the main thread when Houdini is idle."""

from __future__ import annotations

from typing import Any, Callable

from fake_main_thread import later


def executeDeferred(fn: Callable[..., Any], *args: Any) -> None:  # any thread
    later(fn, *args)
