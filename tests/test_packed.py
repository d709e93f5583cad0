"""Packed mode with real child processes, in both transports (local socket and legacy stdio)."""

from __future__ import annotations

import glob
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import unique_channel_name, wait_until

from aurora_dcc.errors import ErrorCode
from aurora_dcc.process.backend import BackendError, BackendHandle, connect_backend, spawn_backend
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError
from aurora_dcc.rpc.server import RpcServer
from aurora_dcc.transport.address import runtime_dir

pytestmark = pytest.mark.subprocess  # all but one test start a backend process

CHILDREN = Path(__file__).parent / "children"
MODES = ("local_socket", "legacy")


def child(name: str) -> list[str]:
    return [sys.executable, str(CHILDREN / name)]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def host_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("host.version", lambda: {"host": "test", "version": 1})
    return registry


@pytest.fixture
def backend(mode: str, host_registry: HandlerRegistry) -> Iterator[BackendHandle]:
    handle = spawn_backend(child("backend_basic.py"), mode=mode, registry=host_registry)
    yield handle
    handle.stop()


def test_ready_lists_the_backends_handlers_and_requests_round_trip(backend: BackendHandle) -> None:
    assert backend.handler_names == [
        "add",
        "call_host",
        "crash",
        "progress",
        "read_stdin",
        "say",
        "spam",
    ]
    assert backend.request("add", {"a": 2, "b": 3}, timeout=5.0) == 5
    assert backend.request("read_stdin", timeout=5.0) == ""
    futures = [backend.request_async("add", [i, i], timeout=5.0) for i in range(50)]
    assert [f.result(timeout=10.0) for f in futures] == [2 * i for i in range(50)]
    with pytest.raises(IpcCallError) as info:
        backend.request("nope", timeout=5.0)
    assert info.value.code == ErrorCode.METHOD_NOT_FOUND


def test_backend_calls_the_host_back(backend: BackendHandle) -> None:
    result = backend.request("call_host", {"method": "host.version"}, timeout=10.0)
    assert result == {"host": "test", "version": 1}


def test_events_from_the_backend_arrive_in_order(backend: BackendHandle) -> None:
    seen: list[int] = []
    done = threading.Event()

    def on_progress(event: str, data: dict[str, int]) -> None:
        seen.append(data["done"])
        if data["done"] == data["total"]:
            done.set()

    backend.on("progress", on_progress)
    assert backend.request("progress", {"count": 200}, timeout=10.0) == 200
    assert done.wait(10.0)
    assert seen == list(range(1, 201))


def test_stop_closes_the_connection_and_the_backend_exits_cleanly(backend: BackendHandle) -> None:
    assert backend.stop(timeout=5.0) == 0  # serve_forever returned: not terminated
    assert backend.returncode == 0
    with pytest.raises(IpcCallError) as info:
        backend.request("add", {"a": 1, "b": 1}, timeout=5.0)
    assert info.value.code == ErrorCode.SHUTTING_DOWN


def test_ten_thousand_printed_lines_mid_call_do_not_disturb_the_ipc(
    mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # Spawned here, not in a fixture: the backend inherits the descriptors capfd reads now.
    with spawn_backend(child("backend_basic.py"), mode=mode) as backend:
        assert backend.request("spam", {"lines": 10_000}, timeout=30.0) == 10_000
        assert backend.request("add", {"a": 20, "b": 22}, timeout=5.0) == 42
        if mode == "legacy":
            # stdout is the channel: the backend's print() goes to its stderr, then ours.
            assert wait_until(lambda: "spam line 9999" in backend.stderr_tail, 10.0)
    captured = capfd.readouterr()
    printed = captured.err if mode == "legacy" else captured.out
    lines = [line for line in printed.splitlines() if line.startswith("spam line")]
    assert lines == [f"spam line {i}" for i in range(10_000)]


def test_legacy_print_reaches_the_hosts_stderr_line_by_line() -> None:
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with spawn_backend(child("backend_basic.py"), mode="legacy", env=buffered) as backend:
        assert backend.request("say", {"text": "hello from a legacy backend"}, timeout=5.0)
        # Not flushed by the backend, yet here while it runs: stdout became line-buffered.
        assert wait_until(lambda: "hello from a legacy backend\n" in backend.stderr_tail, 10.0)


def test_backend_crash_mid_request_fails_the_request_with_exit_code_and_stderr(
    backend: BackendHandle,
) -> None:
    started = time.monotonic()
    with pytest.raises(IpcCallError) as info:
        backend.request("crash", timeout=20.0)
    assert time.monotonic() - started < 10.0  # not the request timeout
    assert info.value.code == ErrorCode.SHUTTING_DOWN
    assert info.value.data["returncode"] == 3
    assert "crashing on purpose" in info.value.data["stderr_tail"]
    assert "exited with code 3" in info.value.message
    with pytest.raises(IpcCallError) as later:
        backend.request("add", {"a": 1, "b": 1}, timeout=5.0)
    assert later.value.code == ErrorCode.SHUTTING_DOWN


def test_early_exit_raises_backend_error_with_exit_code_and_stderr_tail(mode: str) -> None:
    with pytest.raises(BackendError) as info:
        spawn_backend(child("backend_exit_early.py"), mode=mode, ready_timeout=20.0)
    assert info.value.returncode == 7
    assert "config file missing" in info.value.stderr_tail
    assert "exit code 7" in str(info.value)


@pytest.mark.slow
def test_a_backend_that_never_connects_is_stopped_and_reported(mode: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        spawn_backend(child("backend_never_connects.py"), mode=mode, ready_timeout=1.5)
    assert time.monotonic() - started < 10.0
    assert info.value.returncode == -signal.SIGTERM
    assert "busy with something else" in info.value.stderr_tail
    assert "not ready within 1.5s" in str(info.value)


def test_python_code_as_command_and_a_missing_executable() -> None:
    code = (
        "from aurora_dcc.process.backend import connect_backend\n"
        "peer = connect_backend()\n"
        "peer.register('pid', __import__('os').getpid)\n"
        "peer.serve_forever()\n"
    )
    with spawn_backend(code) as backend:
        assert backend.request("pid", timeout=5.0) == backend.pid
    with pytest.raises(BackendError, match="cannot start backend"):
        spawn_backend(["/nonexistent/python-backend"])


def test_connect_backend_outside_a_host_says_so() -> None:
    with pytest.raises(BackendError, match="not started as a backend"):
        connect_backend(environ={})


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit (a zombie counts as exited)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="waits with pidfd_open (Linux)")
@pytest.mark.parametrize(
    ("host_mode", "kill_with_host", "host_ends_by"),
    [
        ("local_socket", False, "SIGKILL"),
        ("legacy", False, "SIGKILL"),
        ("local_socket", True, "SIGKILL"),
        ("local_socket", False, "exit"),
    ],
)
def test_backend_exits_when_its_host_does(
    host_mode: str, kill_with_host: bool, host_ends_by: str
) -> None:
    with subprocess.Popen(
        [*child("host_spawns_backend.py"), host_mode, "1" if kill_with_host else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as host:
        assert host.stdout is not None and host.stdin is not None
        try:
            # The backend shares the host's stdout: skip its lines to the host's own.
            line = b""
            while not line.startswith(b"backend pid "):
                line = host.stdout.readline()
                assert line, "the host exited before its backend was ready"
            backend_pid = int(line.split()[-1])
            assert not wait_for_exit(backend_pid, 0)
            if host_ends_by == "SIGKILL":
                host.send_signal(signal.SIGKILL)
                assert host.wait(10.0) == -signal.SIGKILL
            else:
                host.stdin.close()  # the host returns from main(); atexit stops the backend
                assert host.wait(10.0) == 0
            assert wait_for_exit(backend_pid, 10.0)
        finally:
            host.kill()
            # A SIGKILLed host cannot remove its socket file; don't leave it in /tmp.
            for stale in glob.glob(os.path.join(runtime_dir(), f"auroraview_{host.pid}_*")):
                os.unlink(stale)


def test_a_qt_host_spawns_a_backend_on_its_own_server_from_the_main_thread(qtbot: Any) -> None:
    from aurora_dcc.qt.local_socket import QtLocalSocketServer

    token = "qt-host-token"
    rpc = RpcServer(QtLocalSocketServer(unique_channel_name(), token=token))
    served_on: list[threading.Thread] = []

    @rpc.handler("host.version")
    def version() -> dict[str, int]:
        served_on.append(threading.current_thread())
        return {"version": 2}

    try:
        # Blocking waits on the Qt main thread keep its loop running: the server accepts.
        with spawn_backend(child("backend_basic.py"), server=rpc, token=token) as backend:
            assert backend.request("call_host", {"method": "host.version"}, timeout=10.0) == {
                "version": 2
            }
            assert served_on == [threading.main_thread()]
            with pytest.raises(IpcCallError) as info:
                backend.request("crash", timeout=20.0)
            assert info.value.code == ErrorCode.SHUTTING_DOWN
            assert info.value.data["returncode"] == 3
    finally:
        rpc.close()
