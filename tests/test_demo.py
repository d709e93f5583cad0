"""``make demo`` end to end: the example scripts run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_demo_runs_every_step_on_the_main_thread_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "handled on the host's main thread: True" in out
    assert "event selection.changed: ['cube1']" in out
    assert "[backend stdout] baking 2 node(s)" in out  # the backend's print() reaches stdout
    assert "5 bake.progress events, all on the main thread: True" in out
    assert "{'frames_cached': 20} after 20 progress events (main thread: True)" in out
    assert "cancelled after" in out
    assert "backend exit code 0" in out
    assert "Traceback" not in result.stderr
