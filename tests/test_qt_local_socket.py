"""QtLocalSocketServer / QtLocalSocketChannel on a real Qt loop, real sockets, real processes."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import sys
import threading
import time
from typing import Any

import pytest
from qt_helpers import Child, in_thread, serve_echo, unique_name
from rawclient import RawClient

from aurora_dcc.errors import (
    ChannelTimeout,
    Disconnected,
    ErrorCode,
    ShuttingDown,
    Unauthorized,
)
from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.qt.compat import QtCore
from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.address import AddressInUse, resolve_address
from aurora_dcc.transport.local_socket import LocalSocketChannel

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets (rawclient)")


@pytest.fixture
def make_server(qapp: Any) -> Any:
    servers: list[QtLocalSocketServer] = []

    def make(name: str | None = None, **options: Any) -> QtLocalSocketServer:
        server = QtLocalSocketServer(name or unique_name(), **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def connected_pair(make_server: Any) -> tuple[QtLocalSocketServer, QtLocalSocketChannel, Any]:
    """A server, a Qt client connected to it, and the server's end of that connection."""
    server = make_server()
    client = QtLocalSocketChannel.connect(server.name)
    return server, client, server.accept(timeout=5.0)


def raw_hello(name: str, token: str | None = None) -> tuple[RawClient, dict[str, Any]]:
    client = RawClient.connect(name)
    return client, client.hello(token=token)


# -- handshake, bad input, limits ---------------------------------------------------


def test_handshake_request_and_ping(qtbot: Any, make_server: Any) -> None:
    server = make_server(handler_names=["scene.info"], peer_name="maya-test")
    serve_echo(server)

    def client() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        raw, ready = raw_hello(server.name)
        with raw:
            reply = raw.request("echo", {"x": [1, 2]}, id="r1")
            raw.send({"type": "ping", "id": "p1"})
            return ready, reply, raw.recv()

    ready, reply, pong = in_thread(qtbot, client)
    assert ready["type"] == "ready"
    assert ready["data"]["handlers"] == ["scene.info"]
    assert ready["data"]["peer"] == "maya-test"
    assert reply == {"type": "response", "id": "r1", "data": {"x": [1, 2]}}
    assert pong == {"type": "pong", "id": "p1", "data": {}}


@pytest.mark.parametrize(
    ("frame", "code", "echoed_id"),
    [
        (b"\x00\xffgarbage that is not json\n", ErrorCode.PARSE_ERROR, None),
        (b'{"type":"request","id":"u1","method":"\xff\xfe"}\n', ErrorCode.PARSE_ERROR, None),
        (b'[{"type":"ping"}]\n', ErrorCode.INVALID_MESSAGE, None),
        (b'{"id":"x1","method":"echo"}\n', ErrorCode.INVALID_MESSAGE, "x1"),
    ],
    ids=["garbage", "invalid-utf8", "json-array", "no-type"],
)
def test_bad_frame_is_answered_and_connection_stays_usable(
    qtbot: Any, make_server: Any, frame: bytes, code: int, echoed_id: str | None
) -> None:
    server = make_server()
    serve_echo(server)

    def client() -> tuple[dict[str, Any], dict[str, Any]]:
        raw, _ = raw_hello(server.name)
        with raw:
            raw.send_raw(frame)
            error = raw.recv()
            return error, raw.request("echo", {"still": "open"}, id="after")

    error, reply = in_thread(qtbot, client)
    assert error["type"] == "response"
    assert error["error"]["code"] == code
    assert error.get("id") == echoed_id
    assert reply["data"] == {"still": "open"}
    qtbot.waitUntil(lambda: len(server.connections) == 0, timeout=2000)  # client left


def test_wrong_token_is_refused_and_closed(qtbot: Any, make_server: Any) -> None:
    server = make_server(token="s3cret")
    accepted: list[Any] = []
    server.on_connection(accepted.append)

    def client() -> tuple[dict[str, Any], bool]:
        raw, answer = raw_hello(server.name, token="wrong")
        with raw:
            return answer, raw.is_closed_by_server()

    answer, closed = in_thread(qtbot, client)
    assert answer["error"]["code"] == ErrorCode.UNAUTHORIZED
    assert closed
    assert accepted == []
    qtbot.waitUntil(lambda: server.metrics.errors == 1, timeout=2000)

    def good_client() -> dict[str, Any]:
        raw, ready = raw_hello(server.name, token="s3cret")
        raw.close()
        return ready

    assert in_thread(qtbot, good_client)["type"] == "ready"
    qtbot.waitUntil(lambda: len(accepted) == 1, timeout=2000)


def test_hello_less_client_on_token_less_server(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    serve_echo(server)

    def client() -> dict[str, Any]:
        with RawClient.connect(server.name) as raw:
            return raw.request("echo", 7, id="first")

    assert in_thread(qtbot, client) == {"type": "response", "id": "first", "data": 7}


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        match = re.search(r"VmHWM:\s+(\d+)", status.read())
    assert match is not None
    return int(match.group(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc peak RSS")
@pytest.mark.subprocess
def test_frame_over_limit_is_refused_without_buffering_it(qtbot: Any, make_server: Any) -> None:
    limit = 256 * 1024
    attempted = 256 * 1024 * 1024
    server = make_server(max_frame=limit)
    serve_echo(server)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset this process's peak RSS
    before = _peak_rss_kib()
    child = Child("qt_misbehaving_client.py", server.address, "flood", str(attempted))
    try:
        assert child.wait_exit(qtbot, timeout=60.0) == 0
    finally:
        child.kill()
    report = json.loads(child.lines[-1])
    assert report["reply"]["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    assert report["closed"]
    assert report["sent"] < attempted  # the server hung up long before the end
    assert _peak_rss_kib() - before < 32 * 1024  # KiB: nowhere near the 256 MiB sent at it
    qtbot.waitUntil(lambda: server.connections == [], timeout=2000)


def test_socket_file_is_user_only_and_removed_on_close(qapp: Any, make_server: Any) -> None:
    server = make_server()
    mode = os.stat(server.address).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) & 0o077 == 0, oct(stat.S_IMODE(mode))
    assert server.address == resolve_address(server.name)
    server.close()
    assert not os.path.exists(server.address)
    server.close()  # idempotent


def test_stale_socket_is_replaced_live_one_is_not(qapp: Any, make_server: Any) -> None:
    name = unique_name()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(resolve_address(name))
    stale.close()  # a socket file nobody listens on: a crashed server's leftover
    first = make_server(name)
    with pytest.raises(AddressInUse, match=re.escape(name)) as refused:
        make_server(name)
    assert first.address in str(refused.value)
    assert os.path.exists(first.address)  # the live server's socket was not removed


# -- disconnects, kills, close -------------------------------------------------------


def _serve_one_more_client(qtbot: Any, server: QtLocalSocketServer) -> None:
    def client() -> dict[str, Any]:
        raw, _ = raw_hello(server.name)
        with raw:
            return raw.request("echo", "alive", id="other")

    assert in_thread(qtbot, client)["data"] == "alive"


@pytest.mark.subprocess
def test_client_dying_mid_frame_is_noticed(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    serve_echo(server)
    accepted: list[Any] = []
    server.on_connection(accepted.append)
    child = Child("qt_misbehaving_client.py", server.address, "half-frame")
    try:
        child.wait_exit(qtbot)
        qtbot.waitUntil(lambda: len(accepted) == 1 and accepted[0].closed, timeout=2000)
        assert server.connections == []
        assert accepted[0].is_shutdown()
    finally:
        child.kill()
    _serve_one_more_client(qtbot, server)


@pytest.mark.subprocess
def test_client_sigkilled_mid_stream_is_noticed(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    serve_echo(server)
    child = Child("qt_misbehaving_client.py", server.address, "stream")
    try:
        qtbot.waitUntil(lambda: len(server.connections) == 1, timeout=5000)
        conn = server.connections[0]
        qtbot.waitUntil(lambda: conn.metrics.messages_received > 1000, timeout=5000)
        os.kill(child.proc.pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: server.connections == [], timeout=2000)
        with pytest.raises(Disconnected):
            conn.send(IpcMessage.event_message("too.late"))
    finally:
        child.kill()
    _serve_one_more_client(qtbot, server)


@pytest.mark.subprocess
def test_qt_client_sees_sigkilled_server_promptly(qtbot: Any, qapp: Any) -> None:
    name = unique_name()
    child = Child("qt_raw_server.py", resolve_address(name))
    try:
        child.wait_line(qtbot, "listening")
        channel = QtLocalSocketChannel.connect(name, timeout=5.0)
        assert channel.peer_info["peer"] == "raw-server"
        QtCore.QTimer.singleShot(100, lambda: os.kill(child.proc.pid, signal.SIGKILL))
        started = time.monotonic()
        with pytest.raises(Disconnected):
            channel.receive(timeout=10.0)  # blocked on the Qt thread, loop still running
        assert time.monotonic() - started < 2.0
        assert channel.closed
    finally:
        child.kill()
        os.unlink(resolve_address(name))


def test_close_wakes_blocked_receive_on_both_sides(qtbot: Any, make_server: Any) -> None:
    server, client, conn = connected_pair(make_server)
    # Qt thread blocked in receive; the client is closed from a timer on the same loop.
    QtCore.QTimer.singleShot(50, client.close)
    with pytest.raises(Disconnected):
        client.receive(timeout=5.0)
    with pytest.raises(Disconnected):
        conn.receive(timeout=5.0)  # the server side sees the hang-up too
    with pytest.raises(ShuttingDown):
        client.send(IpcMessage.event_message("after.close"))  # closed here
    with pytest.raises(Disconnected):
        conn.send(IpcMessage.event_message("after.hang.up"))  # the peer left
    assert client.is_shutdown() and conn.is_shutdown()

    # Another thread blocked in receive; the server side closes its connection.
    client2 = QtLocalSocketChannel.connect(server.name)
    conn2 = server.accept(timeout=5.0)
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            client2.receive(timeout=10.0)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    QtCore.QTimer.singleShot(50, conn2.close)
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=3000)
    assert len(outcome) == 1 and isinstance(outcome[0], Disconnected)


def test_server_close_disconnects_clients(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    client = QtLocalSocketChannel.connect(server.name)
    server.accept(timeout=5.0)
    server.close()
    assert client.receive(timeout=5.0).type is IpcMessageType.BYE  # since 1.1, then the close
    with pytest.raises(Disconnected):
        client.receive(timeout=5.0)
    with pytest.raises(ShuttingDown):
        server.accept(timeout=0.1)
    assert not os.path.exists(server.address)


# -- Qt client ------------------------------------------------------------------------


def test_qt_client_wrong_token_raises_unauthorized(qtbot: Any, make_server: Any) -> None:
    server = make_server(token="s3cret")
    with pytest.raises(Unauthorized):
        QtLocalSocketChannel.connect(server.name, token="nope")
    started = time.monotonic()
    channel = QtLocalSocketChannel.connect(server.name, token="s3cret", timeout=30.0)
    assert time.monotonic() - started < 5.0  # returns at the ready, not at the timeout
    assert channel.established


def test_qt_client_without_server_fails_then_retries_until_it_appears(
    qtbot: Any, make_server: Any
) -> None:
    name = unique_name()
    started = time.monotonic()
    with pytest.raises(Disconnected, match=re.escape(name)):
        QtLocalSocketChannel.connect(name, timeout=1.0)
    assert time.monotonic() - started < 1.0
    # The server appears 300 ms from now, on this loop, while connect backs off.
    QtCore.QTimer.singleShot(300, lambda: make_server(name))
    channel = QtLocalSocketChannel.connect(name, timeout=1.0, retry=10)
    assert channel.established
    assert channel.peer_info["protocol"] == 1


def test_ready_timeout_when_server_never_answers(qtbot: Any, qapp: Any) -> None:
    name = unique_name()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(resolve_address(name))
    listener.listen(1)  # accepts at kernel level, never says ready
    try:
        with pytest.raises(ChannelTimeout):
            QtLocalSocketChannel.connect(name, timeout=0.3)
    finally:
        listener.close()
        os.unlink(resolve_address(name))


def test_qt_to_qt_rpc_on_one_thread_does_not_deadlock(qtbot: Any, make_server: Any) -> None:
    """Both ends on the main thread: a blocking request keeps the loop delivering."""
    server = make_server()
    server.on_connection(lambda conn: Peer(conn).register("add", lambda a, b: a + b))
    client = Peer(QtLocalSocketChannel.connect(server.name), session_started=True)
    assert client.request("add", [2, 3], timeout=5.0) == 5
    rtt = client.ping(timeout=5.0)
    assert 0 < rtt < 5.0


def test_handler_waiting_inside_its_own_delivery_still_gets_its_reply(
    qtbot: Any, make_server: Any
) -> None:
    """A request handler that asks the same client something back (nested wait)."""
    server = make_server()

    def on_connection(conn: Any) -> None:
        peer = Peer(conn)
        peer.register("outer", lambda: peer.request("inner", timeout=5.0) + 1)

    server.on_connection(on_connection)
    client = Peer(QtLocalSocketChannel.connect(server.name), session_started=True)
    client.register("inner", lambda: 41)
    assert client.request("outer", timeout=10.0) == 42


# -- many clients, threads, broadcast, metrics -----------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_fifty_clients_two_thousand_round_trips_each(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    serve_echo(server)
    clients, rounds, processes = 50, 2000, 2
    per_process = clients // processes
    children = [
        Child(
            "qt_load_clients.py",
            server.address,
            str(per_process),
            str(rounds),
            str(k * per_process),
        )
        for k in range(processes)
    ]
    try:
        codes = [child.wait_exit(qtbot, timeout=150.0) for child in children]
    finally:
        for child in children:
            child.kill()
    reports = [json.loads(child.lines[-1]) for child in children]
    assert codes == [0] * processes, reports
    assert sum(r["answered"] for r in reports) == clients * rounds
    assert sum(r["mixed_up"] for r in reports) == 0
    assert server.metrics.errors == 0


def test_a_handlers_burst_reaches_the_client_while_the_handler_still_runs(
    qtbot: Any, make_server: Any
) -> None:
    """Events a handler sends in a burst are written as it goes, not all once it returns."""
    server = make_server()
    events = 100_000
    first_arrived = threading.Event()
    arrived_before_return: list[bool] = []

    def on_connection(conn: Any) -> None:
        def on_message(msg: IpcMessage) -> None:
            for i in range(events):
                conn.emit("tick", {"i": i})
            # Still inside the handler: the client must have seen the first events.
            arrived_before_return.append(first_arrived.wait(5.0))

        conn.on_message(on_message)

    server.on_connection(on_connection)

    def client() -> list[int]:
        with RawClient.connect(server.name, timeout=30.0) as raw:
            raw.hello()
            raw.send({"type": "request", "id": "b1", "method": "burst"})
            numbers = [raw.recv()["data"]["i"]]
            first_arrived.set()
            numbers.extend(raw.recv()["data"]["i"] for _ in range(events - 1))
            return numbers

    assert in_thread(qtbot, client, timeout=60.0) == list(range(events))
    assert arrived_before_return == [True]


def test_a_reply_is_written_while_its_handler_runs_an_event_loop(
    qtbot: Any, make_server: Any
) -> None:
    """A handler that replies, then runs a local loop (a modal dialog, say): the reply goes out."""
    server = make_server()
    replied = threading.Event()
    seen_inside_handler: list[bool] = []

    def on_connection(conn: Any) -> None:
        def on_message(msg: IpcMessage) -> None:
            conn.send(IpcMessage.response(msg.id, "ack"))
            loop = QtCore.QEventLoop()
            poll = QtCore.QTimer()
            poll.timeout.connect(lambda: replied.is_set() and loop.quit())
            poll.start(5)
            QtCore.QTimer.singleShot(5000, loop.quit)
            loop.exec()
            poll.stop()
            seen_inside_handler.append(replied.is_set())

        conn.on_message(on_message)

    server.on_connection(on_connection)

    def client() -> Any:
        with RawClient.connect(server.name) as raw:
            raw.hello()
            reply = raw.request("confirm")
            replied.set()
            return reply["data"]

    assert in_thread(qtbot, client) == "ack"
    qtbot.waitUntil(lambda: bool(seen_inside_handler), timeout=10000)
    assert seen_inside_handler == [True]


def test_more_than_the_socket_takes_arrives_complete_and_in_order(
    qtbot: Any, make_server: Any
) -> None:
    """Sends beyond what the OS buffers at once (the rest waits in Qt), then more after."""
    server = make_server()
    raw, _ready = in_thread(qtbot, lambda: raw_hello(server.name))
    with raw:
        conn = server.accept(timeout=5.0)
        payload = "x" * 50_000
        for i in range(200):  # ~10 MB: far more than a socket buffer holds
            conn.emit("big", {"i": i, "pad": payload})

        def read(n: int) -> list[int]:
            return [raw.recv(timeout=20.0)["data"]["i"] for _ in range(n)]

        assert in_thread(qtbot, lambda: read(200), timeout=60.0) == list(range(200))
        for i in range(200, 210):  # written directly again once Qt's queue has drained
            conn.emit("big", {"i": i, "pad": ""})
        assert in_thread(qtbot, lambda: read(10)) == list(range(200, 210))


def test_sends_from_other_threads_arrive_complete_and_in_order(
    qtbot: Any, make_server: Any
) -> None:
    _server, client, conn = connected_pair(make_server)
    threads, per_thread = 4, 500
    received: list[IpcMessage] = []
    conn.on_message(received.append)

    def sender(k: int) -> None:
        for i in range(per_thread):
            client.send(IpcMessage.event_message("n", {"t": k, "i": i}))

    workers = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    qtbot.waitUntil(lambda: len(received) == threads * per_thread, timeout=10000)
    for worker in workers:
        worker.join()
    for k in range(threads):
        assert [m.data["i"] for m in received if m.data["t"] == k] == list(range(per_thread))
    assert client.metrics.messages_sent == threads * per_thread


def test_emit_broadcasts_or_targets_one_connection(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    clients = [QtLocalSocketChannel.connect(server.name) for _ in range(3)]
    conns = [server.accept(timeout=5.0) for _ in clients]
    server.emit("scene.saved", {"path": "/shots/a.ma"})
    for client in clients:
        msg = client.receive(timeout=5.0)
        assert (msg.event, msg.data) == ("scene.saved", {"path": "/shots/a.ma"})
    conns[1].emit("only.you", 1)
    assert clients[1].receive(timeout=5.0).event == "only.you"
    assert clients[0].try_receive() is None and clients[2].try_receive() is None
    assert server.metrics.messages_sent == 3


def test_broadcast_from_a_handler_reaches_every_client_complete_and_in_order(
    qtbot: Any, make_server: Any
) -> None:
    """Held while the handler runs (one write per connection), written when it returns."""
    server = make_server()
    server.on_connection(
        lambda conn: conn.on_message(lambda msg: [server.emit("n", i) for i in range(1000)])
    )
    clients = [QtLocalSocketChannel.connect(server.name) for _ in range(3)]
    for _ in clients:
        server.accept(timeout=5.0)
    clients[0].send(IpcMessage.request("go"))
    for client in clients:
        assert [client.receive(timeout=5.0).data for _ in range(1000)] == list(range(1000))
    assert server.metrics.messages_sent == 3000


def test_without_direct_writes_qt_writes_everything_in_order(
    qtbot: Any, make_server: Any, monkeypatch: Any
) -> None:
    """Where the descriptor is not written directly (Windows pipes), Qt's own writes do it."""
    import aurora_dcc.qt.socket_writer as socket_writer

    monkeypatch.setattr(socket_writer, "direct_writes_possible", lambda: False)
    server = make_server()
    server.on_connection(
        lambda conn: conn.on_message(lambda msg: [conn.emit("n", i) for i in range(1000)])
    )
    client = QtLocalSocketChannel.connect(server.name)
    client.send(IpcMessage.request("go"))
    assert [client.receive(timeout=5.0).data for _ in range(1000)] == list(range(1000))
    client.send(IpcMessage.request("go"))
    assert [client.receive(timeout=5.0).data for _ in range(1000)] == list(range(1000))


def test_set_handlers_reannounces_ready(qtbot: Any, make_server: Any) -> None:
    server = make_server(handler_names=["a"])
    client = QtLocalSocketChannel.connect(server.name)
    assert client.peer_info["handlers"] == ["a"]
    assert client.try_receive() is None  # the ready that opened the session is connect()'s
    server.set_handler_names(["b", "a"])
    again = client.receive(timeout=5.0)
    assert again.type is IpcMessageType.READY and again.data["handlers"] == ["a", "b"]
    assert client.peer_info["handlers"] == ["a", "b"]


def test_metrics_per_connection_and_server(qtbot: Any, make_server: Any) -> None:
    server = make_server()
    serve_echo(server)
    client = QtLocalSocketChannel.connect(server.name)
    for i in range(10):
        client.send(IpcMessage.request("echo", i, id=f"m{i}"))
    replies = [client.receive(timeout=5.0) for _ in range(10)]
    assert [r.data for r in replies] == list(range(10))
    conn = server.connections[0]
    conn_snap, client_snap = conn.metrics.snapshot(), client.metrics.snapshot()
    assert conn_snap.messages_received == 11  # hello + 10 requests
    assert conn_snap.messages_sent == 10  # ready/pong are protocol output, not counted
    assert client_snap.messages_sent == 10 and client_snap.messages_received == 11
    assert client_snap.bytes_sent > 0 and conn_snap.bytes_received > client_snap.bytes_sent
    assert server.metrics.snapshot().queue_length == 1  # established, not yet accept()ed


def test_unread_inbox_holds_the_sender_back(qtbot: Any, make_server: Any) -> None:
    """Nobody receives: the connection stops reading at ``capacity`` instead of growing."""
    capacity, total, pad = 50, 2000, "x" * 10_000
    server = make_server(capacity=capacity)
    sent: list[int] = []

    def flood() -> None:
        raw, _ = raw_hello(server.name)
        with raw:
            for i in range(total):
                raw.send({"type": "event", "event": "big", "data": {"i": i, "pad": pad}})
                sent.append(i)
            raw.recv(timeout=30.0)  # stay connected until the test says goodbye

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    conn = server.accept(timeout=5.0)
    qtbot.waitUntil(lambda: conn.metrics.snapshot().queue_length >= capacity, timeout=5000)
    qtbot.wait(300)  # time in which an unbounded reader would take in everything
    # One read (Qt's 1 MiB buffer) holds about 100 of these frames.
    bound = capacity + 110
    assert conn.metrics.snapshot().queue_length <= bound
    assert len(sent) < total  # the sender is held back by the full socket
    received = [conn.receive(timeout=5.0).data["i"] for _ in range(total)]
    assert received == list(range(total))
    assert conn.metrics.snapshot().peak_queue_length <= bound
    conn.emit("bye.now")
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=5000)


def test_worker_threads_make_requests_through_a_qt_client(qtbot: Any, make_server: Any) -> None:
    """Sends from other threads are handed to the Qt thread; their waits do not touch Qt."""
    server = make_server()
    server.on_connection(lambda conn: Peer(conn).register("square", lambda x: x * x))
    client = Peer(QtLocalSocketChannel.connect(server.name))
    results: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        results[k] = [client.request("square", [k * 100 + i], timeout=5.0) for i in range(100)]

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in workers:
        thread.start()
    qtbot.waitUntil(lambda: not any(t.is_alive() for t in workers), timeout=20000)
    assert results == {k: [(k * 100 + i) ** 2 for i in range(100)] for k in range(4)}


def test_messages_before_the_first_handler_reach_it_first_and_in_order(
    qtbot: Any, make_server: Any
) -> None:
    _server, client, conn = connected_pair(make_server)
    for i in range(5):
        client.emit("early", i)
    qtbot.waitUntil(lambda: conn.metrics.snapshot().queue_length == 5, timeout=5000)
    seen: list[Any] = []
    conn.on_message(lambda msg: seen.append(msg.data))
    for i in range(5, 10):
        client.emit("late", i)
    qtbot.waitUntil(lambda: len(seen) == 10, timeout=5000)
    assert seen == list(range(10))


def test_client_that_never_opens_a_session_is_dropped(qtbot: Any, make_server: Any) -> None:
    server = make_server(token="s3cret", handshake_timeout=0.2)

    def silent_client() -> bool:
        with RawClient.connect(server.name) as raw:
            return raw.is_closed_by_server(timeout=5.0)

    assert in_thread(qtbot, silent_client)
    assert server.metrics.errors == 1
    assert server.connections == []


def test_what_a_thread_sent_before_closing_is_delivered(qtbot: Any, make_server: Any) -> None:
    _server, client, conn = connected_pair(make_server)

    def send_then_close() -> None:
        for i in range(100):
            client.emit("n", i)
        client.close()

    in_thread(qtbot, send_then_close)
    received = []
    with pytest.raises(Disconnected):
        while True:
            received.append(conn.receive(timeout=5.0).data)
    assert received == list(range(100))


def test_qt_objects_deleted_underneath_never_raise_runtime_errors(
    qtbot: Any, make_server: Any
) -> None:
    """A DCC tearing down Qt first: our objects only say Disconnected, never 'C++ deleted'."""
    server, client, conn = connected_pair(make_server)
    client._socket.deleteLater()
    server._server.deleteLater()  # the server's sockets are its children: they go too
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    assert client.closed and conn.closed
    with pytest.raises(Disconnected):
        client.send(IpcMessage.event_message("late"))
    with pytest.raises(Disconnected):
        conn.receive(timeout=1.0)
    client.close()
    conn.close()
    server.close()
    server.emit("nobody.listens")


def test_waits_still_work_while_the_application_quits(qtbot: Any, qapp: Any) -> None:
    """After app.quit() Qt runs no nested loop: waits fall back to processing events."""
    server = QtLocalSocketServer(unique_name())
    serve_echo(server)
    client = QtLocalSocketChannel.connect(server.name)
    outcome: dict[str, Any] = {}

    def while_quitting() -> None:
        qapp.quit()
        client.send(IpcMessage.request("echo", 5, id="q1"))
        outcome["reply"] = client.receive(timeout=5.0).data
        started = time.monotonic()
        try:
            client.receive(timeout=0.3)
        except ChannelTimeout:
            outcome["timed_out_after"] = time.monotonic() - started

    QtCore.QTimer.singleShot(0, while_quitting)
    qapp.exec()
    server.close()
    assert outcome["reply"] == 5
    assert 0.25 < outcome["timed_out_after"] < 3.0


def test_batch_on_the_qt_thread_holds_emits_until_the_block_ends(
    qtbot: Any, make_server: Any
) -> None:
    server = make_server()
    raw, _ready = in_thread(qtbot, lambda: raw_hello(server.name))
    with raw:
        conn = server.connections[0]
        with server.batch():
            for i in range(50):
                server.emit("tick", i)
            with conn.batch():
                for i in range(50, 100):
                    conn.emit("tick", i)
            readable, _, _ = select.select([raw.sock], [], [], 0.2)
            assert readable == []  # nothing written yet
        assert [raw.recv(timeout=5.0)["data"] for _ in range(100)] == list(range(100))


def test_a_broadcast_right_after_connect_reaches_the_new_client(
    qtbot: Any, make_server: Any
) -> None:
    server = make_server()
    for i in range(20):
        client = in_thread(qtbot, lambda: LocalSocketChannel.connect(server.name))
        server.emit("welcome", i)
        assert in_thread(qtbot, lambda: client.receive(5.0)).data == i  # noqa: B023
        client.close()


def test_a_thread_other_than_the_qt_thread_receives_and_resumes_a_full_inbox(
    qtbot: Any, make_server: Any
) -> None:
    """Off the Qt thread receive() waits on a condition: a message wakes it, a timeout
    ends it, taking half of a full inbox resumes reading, a close from a third thread
    ends it with Disconnected."""
    capacity, total = 20, 200
    server = make_server(capacity=capacity)
    client = QtLocalSocketChannel.connect(server.name)
    conn = server.accept(timeout=5.0)
    with pytest.raises(ChannelTimeout):
        in_thread(qtbot, lambda: conn.receive(timeout=0.2))
    for i in range(total):
        client.emit("n", i)
    qtbot.waitUntil(lambda: conn.metrics.snapshot().queue_length >= capacity, timeout=5000)
    received = in_thread(qtbot, lambda: [conn.receive(timeout=5.0).data for _ in range(total)])
    assert received == list(range(total))

    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            conn.receive(timeout=10.0)
        except BaseException as exc:
            outcome.append(exc)

    receiver = threading.Thread(target=blocked)
    receiver.start()
    # Usually after the receiver blocked; Disconnected either way.
    closer = threading.Thread(target=lambda: (time.sleep(0.05), conn.close()))
    closer.start()
    qtbot.waitUntil(lambda: not receiver.is_alive() and not closer.is_alive(), timeout=3000)
    assert len(outcome) == 1 and isinstance(outcome[0], Disconnected)
