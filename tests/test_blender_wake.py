"""The main-loop wake (``aurora_dcc.hosts.blender_wake``): it wakes, and it is harmless.

Without Blender: a signal from ``wake()`` ends a C-level sleep early (as it
ends Blender's idle sleep), other system calls on the main thread restart
instead of failing with ``EINTR``, signals are coalesced, handlers someone
else owns are left alone and the previous handler comes back. In the real
Blender application under Xvfb: saving and loading .blend files, writing and
reading files and images, animation playback and a modal operator all work
while the main thread is signalled thousands of times a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_until

from aurora_dcc.hosts import blender_wake
from aurora_dcc.hosts.blender_wake import (
    ENV_WAKE,
    MainLoopWake,
    install_wake,
    parse_wake_setting,
    uninstall_wake,
)

pytestmark = pytest.mark.skipif(
    not blender_wake.supported() or not hasattr(signal, "SIGRTMIN"),
    reason="the wake needs pthread_kill and real-time signals (Linux)",
)

REPO = Path(__file__).resolve().parent.parent
HARMLESS = REPO / "tests" / "children" / "blender_wake_harmless.py"
BLENDER = shutil.which("blender")
XVFB_RUN = shutil.which("xvfb-run")
LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@pytest.fixture
def wake(monkeypatch: pytest.MonkeyPatch) -> Iterator[MainLoopWake]:
    """An installed ``MainLoopWake`` (default signal), uninstalled after the test."""
    monkeypatch.delenv(ENV_WAKE, raising=False)
    wake = MainLoopWake()
    assert wake.install()
    yield wake
    wake.uninstall()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The signals ``signal.pthread_kill`` sends during the test (it still sends them)."""
    signals: list[int] = []
    real_kill = signal.pthread_kill

    def counting_kill(thread_id: int, signum: int) -> None:
        signals.append(signum)
        real_kill(thread_id, signum)

    monkeypatch.setattr(signal, "pthread_kill", counting_kill)
    return signals


def test_wake_ends_a_c_level_sleep_early(wake: MainLoopWake) -> None:
    # Blender's idle sleep is a C usleep/nanosleep on the main thread: so is this one.
    # Woken again and again until it returns: a first wake might come before it sleeps.
    slept = threading.Event()

    def keep_waking() -> None:
        while not slept.wait(0.05):
            wake.wake()

    thread = threading.Thread(target=keep_waking, daemon=True)
    thread.start()
    started = time.monotonic()
    result = LIBC.usleep(5_000_000)
    elapsed = time.monotonic() - started
    slept.set()
    thread.join()
    assert result == -1 and ctypes.get_errno() == errno.EINTR
    assert elapsed < 2.5, f"usleep slept {elapsed:.2f}s: the wake did not interrupt it"


def blocking_read_while_signalled(signum: int) -> tuple[int, int]:
    """A C ``read()`` on the main thread while a thread signals it; (result, errno)."""
    read_end, write_end = os.pipe()
    main = threading.get_ident()
    done = threading.Event()

    def storm() -> None:
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            signal.pthread_kill(main, signum)
            time.sleep(0.001)
        os.write(write_end, b"x")
        done.set()

    thread = threading.Thread(target=storm, daemon=True)
    buffer = ctypes.create_string_buffer(1)
    try:
        thread.start()
        result = LIBC.read(read_end, buffer, 1)
        error = ctypes.get_errno() if result < 0 else 0  # errno means nothing on success
        done.wait(5.0)
        thread.join(5.0)
    finally:
        os.close(read_end)
        os.close(write_end)
    return result, error


def test_other_system_calls_on_the_main_thread_restart(wake: MainLoopWake) -> None:
    assert wake.signum is not None
    assert blocking_read_while_signalled(wake.signum) == (1, 0)


def test_without_sa_restart_the_same_read_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the test above: a plain handler lets read() fail with EINTR.
    signum = int(signal.SIGRTMIN) + 10
    assert signal.getsignal(signum) == signal.SIG_DFL
    signal.signal(signum, lambda *args: None)
    try:
        result, error = blocking_read_while_signalled(signum)
    finally:
        signal.signal(signum, signal.SIG_DFL)
    assert (result, error) == (-1, errno.EINTR)


def test_wakes_are_coalesced_while_a_signal_is_unhandled(
    wake: MainLoopWake, sent: list[int]
) -> None:
    read_end, write_end = os.pipe()

    def flood() -> None:
        for _ in range(2000):
            wake.wake()
        time.sleep(0.05)  # past the retries: they stop after a few sends
        os.write(write_end, b"x")

    thread = threading.Thread(target=flood, daemon=True)
    buffer = ctypes.create_string_buffer(1)
    try:
        thread.start()
        # The main thread sits in C (no Python runs, so no handler runs) until the flood ends.
        assert LIBC.read(read_end, buffer, 1) == 1
        thread.join(5.0)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert 1 <= len(sent) <= 1 + blender_wake.RETRIES, len(sent)


def test_a_host_that_reports_served_is_retried_until_it_has(
    wake: MainLoopWake, sent: list[int]
) -> None:
    def wake_from_a_thread() -> None:
        thread = threading.Thread(target=wake.wake)
        thread.start()
        thread.join(5.0)

    wake.served()  # from now on only served() answers a signal, not its handler
    wake_from_a_thread()
    # The handler runs here (this thread runs Python), yet nothing served the wake:
    # every retry is sent, then the wake stays in flight and sends nothing more.
    assert wait_until(lambda: len(sent) == 1 + blender_wake.RETRIES, timeout=5.0), len(sent)
    time.sleep(20 * blender_wake.RETRY_AFTER)
    wake_from_a_thread()
    assert len(sent) == 1 + blender_wake.RETRIES
    wake.served()
    wake_from_a_thread()
    assert len(sent) > 1 + blender_wake.RETRIES  # answered: the next wake signals again


def test_wake_on_the_main_thread_sends_nothing(wake: MainLoopWake, sent: list[int]) -> None:
    wake.wake()
    assert sent == []


def test_a_signal_with_a_handler_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WAKE, raising=False)
    first = int(signal.SIGRTMIN) + 6

    def studio_handler(signum: int, frame: Any) -> None:
        pass

    signal.signal(first, studio_handler)
    try:
        taken = MainLoopWake(first)
        assert not taken.install()
        wake = MainLoopWake()
        assert wake.install()
        signum = wake.signum
        assert signum is not None and signum != first
        wake.uninstall()
        assert signal.getsignal(signum) == signal.SIG_DFL
        assert signal.getsignal(first) is studio_handler
    finally:
        signal.signal(first, signal.SIG_DFL)


def test_uninstall_restores_the_previous_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WAKE, raising=False)
    wake = MainLoopWake()
    assert wake.install()
    signum = wake.signum
    assert signum is not None and signal.getsignal(signum) != signal.SIG_DFL
    wake.uninstall()
    assert signal.getsignal(signum) == signal.SIG_DFL
    assert not wake.installed and wake.signum is None
    wake.uninstall()  # idempotent
    wake.wake()  # harmless after uninstall


def test_install_wake_is_shared_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WAKE, raising=False)
    first = install_wake()
    second = install_wake(True)
    try:
        assert first is not None and second is not None
        shared = blender_wake.current_wake()
        assert shared is not None and shared.installed
        uninstall_wake()
        assert shared.installed  # one user left
    finally:
        uninstall_wake()
    assert blender_wake.current_wake() is None and not shared.installed
    assert install_wake(False) is None


def test_the_environment_turns_it_off_or_picks_the_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_WAKE, "off")
    assert not MainLoopWake().install()
    assert install_wake() is None
    monkeypatch.setenv(ENV_WAKE, "SIGRTMIN+8")
    wake = MainLoopWake()
    assert wake.install()
    try:
        assert wake.signum == int(signal.SIGRTMIN) + 8
    finally:
        wake.uninstall()
    monkeypatch.setenv(ENV_WAKE, "on")
    assert not MainLoopWake(enabled=False).install()


def test_parse_wake_setting() -> None:
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    assert parse_wake_setting(None) is True
    assert parse_wake_setting(" On ") is True
    assert parse_wake_setting("0") is False
    assert parse_wake_setting("OFF") is False
    assert parse_wake_setting("SIGRTMIN+3") == rtmin + 3
    assert parse_wake_setting("rtmax-2") == rtmax - 2
    assert parse_wake_setting("SIGUSR2") == int(signal.SIGUSR2)
    assert parse_wake_setting("40") == 40
    for bad in ("SIGRTMIN*2", "nonsense", "SIG_DFL"):
        with pytest.raises(ValueError):
            parse_wake_setting(bad)


def test_install_off_the_main_thread_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WAKE, raising=False)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(MainLoopWake().install()))
    thread.start()
    thread.join(5.0)
    assert results == [False]


UNINSTALL_RACE = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from aurora_dcc.hosts.blender_wake import MainLoopWake
current = [None]
stop = False
def hammer():
    while not stop:
        wake = current[0]
        if wake is not None:
            wake.wake()
thread = threading.Thread(target=hammer, daemon=True)
thread.start()
for _ in range(300):
    wake = MainLoopWake()
    assert wake.install()
    current[0] = wake
    sum(range(2000))  # let signals arrive and be handled
    wake.uninstall()
stop = True
thread.join()
print("survived")
"""


@pytest.mark.subprocess
def test_uninstall_while_wakes_arrive_never_kills_the_process() -> None:
    # A real-time signal's default action ends the process: none may arrive after restore.
    env = {k: v for k, v in os.environ.items() if k != ENV_WAKE}
    proc = subprocess.run(
        [sys.executable, "-c", UNINSTALL_RACE, str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.strip() == "survived"
    assert "race condition" not in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(
    BLENDER is None or XVFB_RUN is None or sys.platform != "linux",
    reason="the Blender application under Xvfb is not installed here (Linux: `make "
    "blender-deps`, i.e. apt-get install -y blender xvfb xauth; CI installs it)",
)
def test_blender_saves_loads_plays_and_runs_modal_operators_under_a_wake_storm(
    tmp_path: Path,
) -> None:
    result_path = tmp_path / "result.json"
    blender_tmp = tmp_path / "tmp"  # Blender's own temp files stay out of $TMPDIR
    blender_tmp.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", ENV_WAKE)
    }
    env["TMPDIR"] = str(blender_tmp)
    command = [str(XVFB_RUN), "-a", str(BLENDER), "--factory-startup"]
    command += ["--window-geometry", "0", "0", "800", "600"]
    command += ["--python", str(HARMLESS), "--", str(result_path)]
    try:
        proc = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=150,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Blender did not finish: {exc.stderr!r}")
    log = f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    assert result_path.exists(), f"no result (exit {proc.returncode}):\n{log}"
    result = json.loads(result_path.read_text())
    assert result["ok"], "".join(result["errors"]) + log
    assert proc.returncode == 0, log
    assert "Traceback" not in proc.stderr, log
    assert not re.search(r"EINTR|Interrupted system call", proc.stdout + proc.stderr), log
    assert result["steps"][-1] == "wake uninstalled, handler restored", result["steps"]
    rate = result["signals"] / result["seconds"]
    assert rate >= 1000, f"only {rate:.0f} signals/s: the storm was too weak to prove anything"
