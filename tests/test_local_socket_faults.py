"""Bad input and faults on the pure-Python local socket: bad frames, oversized frames,
refused sessions, and peers that die (real child processes, SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from rawclient import RawClient
from support import SocketPair, ThreadRunner

from aurora_dcc import Disconnected, IpcMessage
from aurora_dcc.transport.address import resolve_address
from aurora_dcc.transport.local_socket import (
    LocalSocketChannel,
    LocalSocketChannelServer,
    RetryPolicy,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets, POSIX signals")

CHILDREN = Path(__file__).parent / "children"
WAIT = 5.0
PROMPTLY = 2.0
"""How soon a peer's death must be noticed (it is noticed at the next read: at once)."""


@pytest.fixture
def name(channel_name: str) -> str:
    return channel_name  # conftest's unique name, under this file's short fixture name


@pytest.fixture
def server(socket_server: LocalSocketChannelServer) -> LocalSocketChannelServer:
    return socket_server


def start_child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def stop_child(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(WAIT)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def receive_until_disconnected(conn: LocalSocketChannel, within: float) -> int:
    """Drain ``conn`` until ``Disconnected``; the count of messages it still had."""
    deadline = time.monotonic() + within
    count = 0
    while True:
        try:
            conn.receive(timeout=max(0.0, deadline - time.monotonic()))
        except Disconnected:
            return count
        count += 1


# -- bad frames ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "echoed_id"),
    [
        (b"\x00\x01 garbage }{", -32700, None),
        (b'{"type":"event","event":"\xff\xfe"}', -32700, None),
        (b"[1, 2, 3]", -32600, None),
        (b'{"id":"x1","data":{}}', -32600, "x1"),
        (b'{"type":42,"id":"x2"}', -32600, "x2"),
        (b'{"type":"teleport","id":"x3"}', -32600, "x3"),
    ],
    ids=["garbage", "invalid-utf8", "json-array", "no-type", "type-not-string", "unknown-type"],
)
def test_a_bad_frame_is_answered_and_the_connection_stays_usable(
    server: LocalSocketChannelServer, frame: bytes, code: int, echoed_id: str | None
) -> None:
    with RawClient.connect(server.name) as raw:
        assert raw.hello()["type"] == "ready"
        conn = server.accept(timeout=WAIT)
        raw.send_raw(frame + b"\n")
        reply = raw.recv(timeout=WAIT)
        assert reply["type"] == "response"
        assert reply["error"]["code"] == code
        assert reply.get("id") == echoed_id
        raw.send({"type": "ping", "id": "after"})
        pong = raw.recv(timeout=WAIT)
        assert (pong["type"], pong["id"]) == ("pong", "after")
        raw.send({"type": "event", "event": "fine"})
        assert conn.receive(WAIT).event == "fine"
        assert conn.metrics.errors == 1


def test_an_oversized_frame_gets_32004_and_a_close_without_being_buffered(name: str) -> None:
    limit = 1024 * 1024
    chunk = b"x" * limit  # made before measuring: the sender's buffer is not the server's
    tracemalloc.start()
    try:
        with LocalSocketChannelServer(name, max_frame=limit) as server:
            raw = RawClient.connect(name)
            raw.hello()
            conn = server.accept(timeout=WAIT)
            assert isinstance(conn, LocalSocketChannel)
            sent = 0
            with pytest.raises(OSError):  # the server hangs up long before 64 MiB
                while sent < 64 * limit:
                    raw.send_raw(chunk)
                    sent += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
            reply = raw.recv(timeout=WAIT)
            assert reply["type"] == "response"
            assert reply["error"]["code"] == -32004
            assert raw.is_closed_by_server(WAIT)
            raw.close()
            assert receive_until_disconnected(conn, WAIT) == 0
            assert server.connections == []
    finally:
        tracemalloc.stop()
    assert sent < 16 * limit
    # The limit, one read, and the copies a read makes: never the frame's 64 MiB.
    assert peak < 4 * limit


def test_a_frame_at_the_limit_still_passes(name: str) -> None:
    with LocalSocketChannelServer(name, max_frame=4096) as server:
        client = LocalSocketChannel.connect(name, max_frame=4096)
        conn = server.accept(timeout=WAIT)
        with client:
            frame = IpcMessage("event", "", event="e").to_bytes()
            payload = "y" * (4096 - len(frame))
            client.emit("e", payload)
            assert conn.receive(WAIT).data == payload


@pytest.mark.parametrize(
    ("token", "protocol", "code"),
    [("wrong", 1, -32003), (None, 1, -32003), ("s3cret", 2, -32005)],
    ids=["wrong-token", "no-token", "protocol-2"],
)
def test_a_refused_session_is_answered_and_closed(
    name: str, token: str | None, protocol: int, code: int
) -> None:
    with LocalSocketChannelServer(name, token="s3cret") as server:
        mode = os.stat(server.address).st_mode
        assert stat.S_IMODE(mode) == 0o600
        with RawClient.connect(name) as raw:
            reply = raw.hello(token=token, protocol=protocol)
            assert reply["type"] == "response"
            assert reply["error"]["code"] == code
            assert raw.is_closed_by_server(WAIT)
        with RawClient.connect(name) as raw:  # a request without hello
            raw.send({"type": "request", "id": "r1", "method": "scene.info"})
            assert raw.recv(timeout=WAIT)["error"]["code"] == -32003
            assert raw.is_closed_by_server(WAIT)
        assert server.connections == []


# -- peers that die --------------------------------------------------------


@pytest.mark.subprocess
def test_a_client_that_dies_mid_frame_is_noticed_and_others_are_still_served(
    socket_pair: SocketPair,
) -> None:
    server, other, other_conn = socket_pair
    child = start_child(str(CHILDREN / "ls_client.py"), server.name, "half")
    try:
        assert child.stdout is not None and child.stdout.readline() == "sent\n"
        conn = server.accept(timeout=WAIT)
        assert isinstance(conn, LocalSocketChannel)
        assert child.stdin is not None
        child.stdin.close()  # the child exits with half a frame sent
        assert child.wait(WAIT) == 0
        assert receive_until_disconnected(conn, PROMPTLY) == 0
        with other:
            other.emit("still.served")
            assert other_conn.receive(WAIT).event == "still.served"
            server.emit("to.everyone")
            assert other.receive(WAIT).event == "to.everyone"
    finally:
        stop_child(child)


@pytest.mark.subprocess
def test_a_client_killed_mid_stream_is_noticed_promptly(
    server: LocalSocketChannelServer,
) -> None:
    child = start_child(str(CHILDREN / "ls_client.py"), server.name, "stream")
    try:
        conn = server.accept(timeout=WAIT)
        assert isinstance(conn, LocalSocketChannel)
        assert child.stdout is not None and child.stdout.readline() == "streaming\n"
        assert conn.receive(WAIT).event == "tick"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(WAIT) == -signal.SIGKILL
        # Whatever was in flight is delivered, then Disconnected; nothing hangs.
        receive_until_disconnected(conn, PROMPTLY + 5.0)
        assert server.connections == []
        with LocalSocketChannel.connect(server.name) as late:
            assert server.accept(timeout=WAIT) is not None
            assert late.is_connected
    finally:
        stop_child(child)


@pytest.mark.subprocess
def test_a_killed_server_wakes_its_clients_and_its_name_can_be_served_again(
    name: str, run_in_thread: ThreadRunner
) -> None:
    child = start_child(str(CHILDREN / "ls_server.py"), name)
    try:
        client = LocalSocketChannel.connect(name, retry=RetryPolicy(attempts=100, max_delay=0.1))
        request = IpcMessage.request("echo", {"n": 1})
        client.send(request)
        assert client.receive(WAIT).data == {"n": 1}
        waiter = run_in_thread.start(client.receive, timeout=30.0)
        client.send(IpcMessage.request("block"))  # never answered
        os.kill(child.pid, signal.SIGKILL)
        child.wait(WAIT)
        assert type(waiter.exception(PROMPTLY)) is Disconnected
        assert client.is_shutdown()
        with pytest.raises(Disconnected):
            client.emit("anyone?")
        # The dead server's socket file is stale: a new server takes the name over.
        assert os.path.exists(resolve_address(name))
        with LocalSocketChannelServer(name) as again, LocalSocketChannel.connect(name):
            assert again.accept(timeout=WAIT) is not None
    finally:
        stop_child(child)


def test_a_server_that_dies_during_hello_fails_connect_without_hanging(name: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = resolve_address(name)
    listener.bind(path)
    listener.listen()

    def accept_and_die() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)  # the hello
        conn.close()

    thread = threading.Thread(target=accept_and_die)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(Disconnected, match="during hello"):
            LocalSocketChannel.connect(name, timeout=WAIT)
        assert time.monotonic() - started < PROMPTLY
    finally:
        thread.join(WAIT)
        listener.close()
        os.unlink(path)
