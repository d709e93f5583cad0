"""The ``aurora-dcc`` command, run as a real child process against real hosts.

Hosts are real too: a pure-Python server in this process, ``aurora-dcc serve``
and ``tests/children/cli_host.py`` (a standalone host whose ``freeze`` blocks
its main thread) as children, each in a private runtime folder (``cli_helpers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cli_helpers import Runtime, read_line

from aurora_dcc.cli.exit_codes import ExitCode
from aurora_dcc.process.discovery import list_hosts
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannelServer

pytestmark = pytest.mark.subprocess  # each test runs the command as a child process


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with Runtime.open(monkeypatch) as private:
        yield private


@pytest.fixture
def server(channel_name: str) -> Iterator[tuple[LocalSocketChannelServer, str]]:
    """A pure-Python server with a token and no discovery record: ``scene.info``, ``fail``."""
    registry = HandlerRegistry()
    registry.register("scene.info", lambda verbose=False: {"nodes": 3, "verbose": verbose})

    def fail() -> None:
        raise IpcCallError(-32602, "bad scene")

    registry.register("fail", fail)
    name = channel_name
    srv = LocalSocketChannelServer(name, token="tok", handler_names=registry.names())
    peers: list[Peer] = []
    srv.on_connection(lambda conn: peers.append(Peer(conn, registry=registry)))
    try:
        yield srv, name
    finally:
        srv.close()


def cli(name: str, *args: str, token: str = "tok") -> subprocess.CompletedProcess[str]:
    """The command with the channel and token in the environment (as a host's child has them)."""
    env = {**os.environ, "AURORAVIEW_IPC_CHANNEL": name, "AURORAVIEW_IPC_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "aurora_dcc.cli", "--timeout", "5", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


# -- a host named by the environment (no discovery record) ----------------------------


def test_call_prints_the_result_as_json(server: tuple[LocalSocketChannelServer, str]) -> None:
    result = cli(server[1], "call", "scene.info", '{"verbose": true}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"nodes": 3, "verbose": True}


def test_handlers_and_ping(server: tuple[LocalSocketChannelServer, str]) -> None:
    handlers = cli(server[1], "handlers")
    assert json.loads(handlers.stdout) == ["fail", "scene.info"]
    ping = cli(server[1], "ping")
    assert ping.returncode == 0, ping.stderr
    times = json.loads(ping.stdout)
    assert times["connect_ms"] > 0 and times["round_trip_ms"] > 0


def test_each_failure_has_its_own_exit_status(
    server: tuple[LocalSocketChannelServer, str],
) -> None:
    failed = cli(server[1], "call", "fail")
    assert failed.returncode == ExitCode.CALL_FAILED and failed.stdout == ""
    assert "-32602" in failed.stderr and "bad scene" in failed.stderr
    unknown = cli(server[1], "call", "nope")
    assert unknown.returncode == ExitCode.CALL_FAILED and "-32601" in unknown.stderr
    refused = cli(server[1], "ping", token="wrong")
    assert refused.returncode == ExitCode.CONNECT_FAILED and "unauthorized" in refused.stderr
    nobody = cli(server[1] + "_gone", "ping")
    assert nobody.returncode == ExitCode.CONNECT_FAILED and "no host serves" in nobody.stderr


def test_usage_errors_exit_2_in_one_line(server: tuple[LocalSocketChannelServer, str]) -> None:
    for args in (
        ("call", "m", "{not json"),
        ("call", "m", "a=1", "{}"),
        ("--timeout", "-1", "ping"),
        ("--timeout", "0", "ping"),
        ("--timeout", "soon", "ping"),
        ("call", "m", "--timeout", "nan"),
    ):
        result = cli(server[1], *args)
        assert result.returncode == ExitCode.USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
    bad_name = cli("../escape", "ping")
    assert bad_name.returncode == ExitCode.USAGE and "'..'" in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) == 1


def test_version_and_help_for_people() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "aurora_dcc.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("aurora-dcc 0.")
    assert "protocol" in version.stdout
    top = subprocess.run(
        [sys.executable, "-m", "aurora_dcc.cli", "--help"], capture_output=True, text=True
    ).stdout
    assert "examples:" in top and "aurora-dcc serve" in top and "::" not in top
    for status in ExitCode:
        assert f"\n  {int(status)} " in top, status  # every exit status is explained
    call_help = subprocess.run(
        [sys.executable, "-m", "aurora_dcc.cli", "call", "--help"], capture_output=True, text=True
    ).stdout
    assert "method" in call_help and "key=value" in call_help and "scene.info" in call_help


# -- `serve`, discovery, and no channel typed -------------------------------------------


def test_serve_then_hosts_and_call_with_no_channel(runtime: Runtime) -> None:
    """The issue's test: `aurora-dcc serve` in one shell; `hosts`, `call scene.info` in another."""
    serving = runtime.serve()
    hosts = runtime.cli("hosts")
    assert hosts.returncode == 0, hosts.stderr
    header, row = hosts.stdout.splitlines()
    assert header.split()[:4] == ["DCC", "VERSION", "PID", "CHANNEL"]
    assert row.split()[0] == "standalone" and str(serving.pid) in row.split()
    listed = json.loads(runtime.cli("hosts", "--json").stdout)
    assert [(r["pid"], r["dcc"], r["token_required"]) for r in listed] == [
        (serving.pid, "standalone", True)
    ]
    info = runtime.cli("call", "scene.info")  # no channel, no token typed
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["host"] == "standalone"
    created = runtime.cli("call", "scene.create", "type=cube", "name=box")
    assert json.loads(created.stdout) == "box"
    piped = runtime.cli("call", "scene.create", "-", input='{"type": "sphere"}')
    assert piped.returncode == 0, piped.stderr
    assert json.loads(runtime.cli("-c", "standalone", "call", "scene.ls").stdout) == [
        "box",
        json.loads(piped.stdout),
    ]
    serving.terminate()  # SIGTERM: a clean stop, record and socket removed
    assert serving.wait(10) == 0
    assert list_hosts() == [] and os.listdir(runtime.channel_dir) == []
    gone = runtime.cli("call", "scene.info")
    assert gone.returncode == ExitCode.CONNECT_FAILED and "no aurora_dcc host" in gone.stderr


def test_two_hosts_need_a_name(runtime: Runtime) -> None:
    first, second = runtime.serve(), runtime.serve()
    both = runtime.cli("call", "scene.info")
    assert both.returncode == ExitCode.CONNECT_FAILED and both.stdout == ""
    assert "2 hosts" in both.stderr
    assert str(first.pid) in both.stderr and str(second.pid) in both.stderr
    by_pid = runtime.cli("--channel", str(second.pid), "ping")
    assert by_pid.returncode == 0, by_pid.stderr
    assert json.loads(by_pid.stdout)["channel"] == f"auroraview_{second.pid}"
    by_dcc = runtime.cli("--channel", "standalone", "ping")
    assert by_dcc.returncode == ExitCode.CONNECT_FAILED and "2 hosts match" in by_dcc.stderr
    no_maya = runtime.cli("--channel", "maya", "ping")
    assert no_maya.returncode == ExitCode.CONNECT_FAILED and "no running host" in no_maya.stderr


def test_the_environment_channel_wins_over_discovery(
    runtime: Runtime, server: tuple[LocalSocketChannelServer, str]
) -> None:
    runtime.serve()
    env = {"AURORAVIEW_IPC_CHANNEL": server[1], "AURORAVIEW_IPC_TOKEN": "tok"}
    result = runtime.cli("call", "scene.info", env=env)
    assert json.loads(result.stdout) == {"nodes": 3, "verbose": False}
    assert f"AURORAVIEW_IPC_CHANNEL={server[1]} is set" in runtime.cli("hosts", env=env).stderr
    assert json.loads(runtime.cli("-c", "standalone", "call", "scene.info", env=env).stdout)[
        "host"
    ] == ("standalone")


# -- when the host misbehaves -------------------------------------------------------------


def test_verbose_shows_the_handlers_remote_traceback(runtime: Runtime) -> None:
    runtime.host()
    quiet = runtime.cli("call", "boom")
    assert quiet.returncode == ExitCode.CALL_FAILED
    assert "-32603" in quiet.stderr and "the handler broke" in quiet.stderr
    assert "Traceback" not in quiet.stderr and "-v" in quiet.stderr
    verbose = runtime.cli("-v", "call", "boom")
    assert verbose.returncode == ExitCode.CALL_FAILED
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "ValueError: the handler broke" in verbose.stderr


def test_a_call_with_no_reply_in_time_exits_4(runtime: Runtime) -> None:
    runtime.host()
    late = runtime.cli("--timeout", "1", "call", "freeze", "seconds=2")
    assert late.returncode == ExitCode.TIMEOUT, late.stderr
    assert "freeze: no reply to request within 1.0s" in late.stderr


@pytest.mark.slow  # a main thread frozen for seconds
def test_ping_says_when_the_main_thread_did_not_answer(runtime: Runtime) -> None:
    host = runtime.host()
    freezing = runtime.cli_start("call", "freeze", "seconds=8")  # room for two CLI starts
    read_line(host, "frozen")
    late = runtime.cli("--timeout", "0.5", "ping")  # gives up while the main thread sleeps
    assert late.returncode == ExitCode.TIMEOUT, late.stderr
    assert "did not answer within 0.5 s" in late.stderr and "main thread" in late.stderr
    slow = runtime.cli("ping")  # waits for the rest of the freeze, then answers
    assert slow.returncode == 0, slow.stderr
    times = json.loads(slow.stdout)
    assert times["connect_ms"] > 250  # the handshake waited for the main thread
    assert "main thread did not answer in time" in slow.stderr
    assert freezing.wait(30) == 0


def test_a_host_killed_during_a_call_is_a_lost_connection(runtime: Runtime) -> None:
    host = runtime.host()
    calling = runtime.cli_start("call", "freeze", "seconds=20")
    read_line(host, "frozen")
    host.send_signal(signal.SIGKILL)
    host.wait(10)
    assert calling.wait(30) == ExitCode.CONNECTION_LOST
    assert calling.stderr is not None
    error = calling.stderr.read()
    assert "connection lost" in error and "shutting down" not in error


def test_listen_exits_5_when_the_host_goes_away(runtime: Runtime) -> None:
    host = runtime.host()
    listening = runtime.cli_start("listen", "scene.*")
    read_line(host, "client")
    heard: list[str] = []
    for _ in range(10):  # the listener subscribes a moment after it connects
        assert runtime.cli("call", "scene.create", "type=cube").returncode == 0
        with contextlib.suppress(AssertionError):
            heard.append(read_line(listening, "{", timeout=2.0))
            break
    event = json.loads(heard[0])
    assert event["event"] == "scene.changed" and event["data"]["type"] == "cube"
    assert host.stdin is not None
    host.stdin.close()  # the host quits cleanly
    assert listening.wait(30) == ExitCode.CONNECTION_LOST
    assert listening.stderr is not None and "connection lost" in listening.stderr.read()
    counted = runtime.serve()
    one = runtime.cli_start("--channel", str(counted.pid), "listen", "--count", "1")
    for _ in range(40):  # until the listener, once connected, hears one event
        runtime.cli("--channel", str(counted.pid), "call", "scene.create", "type=cone")
        if one.poll() is not None:
            break
    assert one.wait(10) == 0


def test_listen_stops_quietly_when_its_reader_leaves(runtime: Runtime) -> None:
    """`aurora-dcc listen | head -1`: once head exits, listen ends with status 0, no traceback."""
    runtime.serve()
    listening = runtime.cli_start("listen")
    heard: list[str] = []
    for _ in range(10):  # the listener subscribes a moment after it connects
        runtime.cli("call", "scene.create", "type=cube")
        with contextlib.suppress(AssertionError):
            heard.append(read_line(listening, "{", timeout=2.0))
            break
    assert heard
    assert listening.stdout is not None and listening.stderr is not None
    listening.stdout.close()  # the reader leaves
    for _ in range(10):
        runtime.cli("call", "scene.create", "type=cube")
        if listening.poll() is not None:
            break
    assert listening.wait(10) == 0
    assert "Traceback" not in listening.stderr.read()


def test_doctor_reports_the_setup_and_each_host(runtime: Runtime) -> None:
    serving = runtime.serve()
    report = runtime.cli("doctor")
    assert report.returncode == 0, report.stdout + report.stderr
    lines = {line.split()[1]: line for line in report.stdout.splitlines() if line.strip()}
    assert lines["python"].startswith("ok") and sys.version.split()[0] in lines["python"]
    assert {"aurora_dcc", "qt", "orjson", "runtime", "hosts", "host"} <= set(lines)
    assert "drwx------" in lines["runtime"] and "1 running" in lines["hosts"]
    assert f"pid {serving.pid}" in lines["host"] and "ping" in lines["host"]
