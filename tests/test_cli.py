"""The ``aurora-dcc`` command against a real server, run as a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannelServer

pytestmark = pytest.mark.subprocess  # each test runs the command as a child process


@pytest.fixture
def server(channel_name: str) -> Iterator[tuple[LocalSocketChannelServer, str]]:
    """A pure-Python server with a token, serving ``scene.info`` and ``fail``."""
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
    env = {**os.environ, "AURORAVIEW_IPC_CHANNEL": name, "AURORAVIEW_IPC_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "aurora_dcc.cli", "--timeout", "5", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_call_prints_the_result_as_json(server: tuple[LocalSocketChannelServer, str]) -> None:
    result = cli(server[1], "call", "scene.info", '{"verbose": true}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"nodes": 3, "verbose": True}


def test_handlers_and_ping(server: tuple[LocalSocketChannelServer, str]) -> None:
    handlers = cli(server[1], "handlers")
    assert json.loads(handlers.stdout) == ["fail", "scene.info"]
    ping = cli(server[1], "ping")
    assert ping.returncode == 0 and json.loads(ping.stdout) > 0


def test_errors_go_to_stderr_with_status_1(server: tuple[LocalSocketChannelServer, str]) -> None:
    failed = cli(server[1], "call", "fail")
    assert failed.returncode == 1 and failed.stdout == ""
    assert "-32602" in failed.stderr and "bad scene" in failed.stderr
    unknown = cli(server[1], "call", "nope")
    assert unknown.returncode == 1 and "-32601" in unknown.stderr
    refused = cli(server[1], "ping", token="wrong")
    assert refused.returncode == 1 and "unauthorized" in refused.stderr


def test_usage_errors_exit_2() -> None:
    assert cli("", "ping").returncode == 2
    assert cli("x", "call", "m", "{not json").returncode == 2
