"""Quitting a Qt application under a busy DccIpcChannel, in real child processes.

Each child (tests/children/dcc_quit.py) runs its own application, quits it, and
lets the interpreter tear everything down; it must exit 0 with nothing from Qt
or Python on stderr (no "Internal C++ object already deleted", no warning about
objects and threads, no traceback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.subprocess

CHILD = os.path.join(os.path.dirname(__file__), "children", "dcc_quit.py")


def run_child(mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, CHILD, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}; stderr:\n{proc.stderr}"
    assert proc.stderr.strip() == "", f"child wrote to stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", ["core", "gui"])
def test_quit_with_messages_queued_and_a_worker_in_call_in_main_thread(mode: str) -> None:
    result = run_child(mode)
    assert result["exec"] == 0
    assert result["call_was_queued"] is True
    assert result["call"] == "ShuttingDown"  # not left hanging until its 30 s timeout
    assert result["call_seconds"] < 10.0
    assert result["flood_stopped_by"] == "ShuttingDown"
    assert result["threads_done"] is True
    assert result["is_shutdown"] is True
    # What was queued at quit went to the handler, in order, before the channel let go.
    assert result["delivered"] == result["sent"]
    assert result["delivered_in_order"] is True
    assert result["call_after_quit"] == "ShuttingDown"


def test_a_channel_made_before_the_application_waits_for_attach() -> None:
    result = run_child("late")
    assert result["attached_before_app"] is False
    assert result["attach_before_app"] == "RuntimeError"
    assert result["call_before_app"] == "RuntimeError"
    assert result["module_call_before_app"] == "RuntimeError"
    assert result["call_after_attach"] == "0"  # calls run before queued messages
    assert result["module_call_after_attach"] == "'main'"
    assert result["delivered"] is True  # the 100 messages queued before the app existed
    assert result["is_shutdown"] is True  # by aboutToQuit
