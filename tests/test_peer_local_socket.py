"""Peer over the plain LocalSocketChannel: real sockets, JSON on the wire, a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import ChildProcesses

from aurora_dcc import ErrorCode
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer
from aurora_dcc.transport.local_socket import (
    LocalSocketChannel,
    LocalSocketChannelServer,
    RetryPolicy,
)
from aurora_dcc.transport.read_turn import ReadState

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets in these tests")

WAIT = 10.0
CHILD = os.path.join(os.path.dirname(__file__), "children", "peer_backend.py")


@pytest.fixture
def name(channel_name: str) -> str:
    return channel_name  # conftest's unique name, under this file's short fixture name


@pytest.fixture
def served(name: str) -> Iterator[tuple[HandlerRegistry, LocalSocketChannelServer, Peer]]:
    """A server whose connections are served by Peers sharing one registry, and a client Peer."""
    registry = HandlerRegistry()
    server = LocalSocketChannelServer(name)
    registry.subscribe(lambda: server.set_handler_names(registry.names()))
    server.on_connection(lambda conn: Peer(conn, registry=registry, name="host"))
    client = Peer(LocalSocketChannel.connect(name, timeout=WAIT), name="tool")
    yield registry, server, client
    client.channel.close()
    server.close()


def test_requests_errors_and_events_over_a_socket(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    registry, server, client = served
    registry.register("scene.info", lambda verbose=False: {"nodes": 3, "verbose": verbose})

    def broken() -> None:
        raise KeyError("pCube1")

    registry.register("broken", broken)
    registry.register("not_json", lambda: object())
    assert client.request("scene.info", {"verbose": True}) == {"nodes": 3, "verbose": True}
    futures = [client.request_async("scene.info", {"verbose": i % 2 == 0}) for i in range(50)]
    assert [f.result(WAIT)["verbose"] for f in futures] == [i % 2 == 0 for i in range(50)]

    with pytest.raises(IpcCallError) as info:
        client.request("broken")
    assert info.value.code == ErrorCode.INTERNAL_ERROR
    assert info.value.data["type"] == "KeyError" and "pCube1" in info.value.data["traceback"]
    with pytest.raises(IpcCallError) as info:
        client.request("not_json")
    assert info.value.code == ErrorCode.INTERNAL_ERROR and "not_json" in info.value.message
    with pytest.raises(IpcCallError) as info:
        client.request("scene.info", {"colour": 1})
    assert info.value.code == ErrorCode.INVALID_PARAMS

    seen: list[tuple[str, Any]] = []
    done = threading.Event()
    client.on("selection.*", lambda e, d: seen.append((e, d)))
    client.on("end", lambda e, d: done.set())
    server.emit("selection.changed", {"nodes": ["pCube1"]})
    server.emit("scene.saved")
    server.emit("end")
    assert done.wait(WAIT)
    assert seen == [("selection.changed", {"nodes": ["pCube1"]})]
    assert client.ping() > 0  # the server's transport answers; the pong comes up to the Peer


def test_handler_list_changes_reach_the_client(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    registry, _, client = served
    # The handshake's ready (consumed by the socket channel) is known at once.
    assert client.wait_ready(0) and client.remote_handler_names == []
    registry.register("scene.save", lambda: None)
    deadline = time.monotonic() + WAIT
    while client.remote_handler_names != ["scene.save"] and time.monotonic() < deadline:
        client.ping()  # a round trip: the ready sent before it has been handled
    assert client.remote_handler_names == ["scene.save"]


@pytest.mark.subprocess
def test_a_backend_in_a_child_process_serves_calls_back_and_its_crash_fails_requests(
    name: str,
) -> None:
    server = LocalSocketChannelServer(name, handler_names=["host.version"])
    child = subprocess.Popen([sys.executable, CHILD, name])
    try:
        conn = server.accept(timeout=WAIT)
        host = Peer(conn, name="host", timeout=60.0)
        host.register("host.version", lambda: "2025.1")
        assert host.wait_ready(WAIT)
        assert host.remote_handler_names == ["call_host", "crash", "echo", "host_handlers"]
        assert host.request("host_handlers") == ["host.version"]  # from the handshake
        assert host.remote_info["peer"] == "backend"
        assert host.request("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert host.request("call_host", ["host.version"]) == "2025.1"

        pending = host.request_async("echo", {"b": 1})
        assert pending.result(WAIT) == {"b": 1}
        started = time.monotonic()
        with pytest.raises(IpcCallError) as info:
            host.request("crash")
        assert info.value.code == ErrorCode.SHUTTING_DOWN
        assert time.monotonic() - started < WAIT  # promptly, not after the 60 s timeout
        assert child.wait(WAIT) == 3
        with pytest.raises(IpcCallError) as info:
            host.request("echo")
        assert info.value.code == ErrorCode.SHUTTING_DOWN
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(WAIT)
        server.close()


def test_events_sent_before_a_reply_arrive_first_and_in_order(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    registry, server, client = served
    got: list[int] = []
    client.on("tick", lambda event, data: got.append(data))

    def slow(n: int) -> int:
        for i in range(n):
            server.emit("tick", i)
        return n

    registry.register("slow", slow)
    assert client.request("slow", {"n": 200}, timeout=WAIT) == 200
    assert got == list(range(200))


def test_requests_from_many_threads_while_events_stream(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    registry, server, client = served
    registry.register("echo", lambda value: value)
    ticks: list[int] = []
    client.on("tick", lambda event, data: ticks.append(data))
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            server.emit("tick", i)
            i += 1
            time.sleep(0.0005)

    streamer = threading.Thread(target=stream)
    streamer.start()
    results: dict[int, list[int]] = {}

    def caller(k: int) -> None:
        results[k] = [client.request("echo", {"value": k * 1000 + i}) for i in range(200)]

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(60.0)
    stop.set()
    streamer.join(WAIT)
    assert results == {k: [k * 1000 + i for i in range(200)] for k in range(4)}
    assert ticks == list(range(len(ticks)))  # none lost, none out of order


def test_a_blocking_request_from_a_handler_on_the_reader_thread_is_refused(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    _registry, server, client = served
    errors: list[BaseException] = []
    handled = threading.Event()

    def on_event(event: str, data: Any) -> None:
        try:
            client.request("anything", timeout=WAIT)
        except BaseException as exc:
            errors.append(exc)
        handled.set()

    client.on("go", on_event)
    server.emit("go")
    assert handled.wait(WAIT)
    assert errors and isinstance(errors[0], RuntimeError)
    assert "would wait for its own reply" in str(errors[0])


def test_a_request_reading_its_own_reply_still_ends_on_close_and_on_timeout(
    served: tuple[HandlerRegistry, LocalSocketChannelServer, Peer],
) -> None:
    # A blocking request reads the socket on its own thread (wait_event); a close
    # or a timeout, which come from elsewhere, must still end it promptly.
    registry, _server, client = served
    release = threading.Event()
    registry.register("hold", lambda: release.wait(WAIT))
    started = time.monotonic()
    with pytest.raises(IpcCallError) as info:
        client.request("hold", timeout=0.2)
    assert info.value.code == ErrorCode.TIMEOUT
    assert 0.2 <= time.monotonic() - started < 2.0
    errors: list[IpcCallError] = []

    def call() -> None:
        try:
            client.request("hold", timeout=30.0)
        except IpcCallError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    # Until the caller holds the read turn inside its wait, the case this test is
    # for (nothing else takes it: the server sends nothing, the reader stays in poll).
    channel = client.channel
    assert isinstance(channel, LocalSocketChannel)
    deadline = time.monotonic() + WAIT
    while not (client.pending and channel.read_state is ReadState.CALLER_READING):
        assert time.monotonic() < deadline, "the request never started waiting"
        time.sleep(0.001)
    started = time.monotonic()
    client.close()
    caller.join(2.0)
    assert not caller.is_alive()
    assert time.monotonic() - started < 2.0
    assert [e.code for e in errors] == [ErrorCode.SHUTTING_DOWN]
    release.set()


@pytest.mark.subprocess
def test_requests_to_another_process_from_several_threads_read_their_own_replies(
    name: str, children: ChildProcesses
) -> None:
    # Each waiting thread reads the socket itself (polling first: the peer is
    # another process) while the Peer's reader thread stands by: every reply
    # reaches its own caller.
    children.spawn("ls_server.py", name)
    channel = LocalSocketChannel.connect(name, retry=RetryPolicy(attempts=100, max_delay=0.1))
    client = Peer(channel, name="tool")
    results: dict[int, list[int]] = {}

    def caller(k: int) -> None:
        results[k] = [client.request("echo", {"v": k * 1000 + i})["v"] for i in range(300)]

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(60.0)
    assert results == {k: [k * 1000 + i for i in range(300)] for k in range(4)}
    channel.close()
