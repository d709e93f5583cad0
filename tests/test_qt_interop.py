"""The Qt side talks to everything that speaks PROTOCOL.md, in every pairing.

- a client written from PROTOCOL.md with stdlib ``socket`` + ``json`` only → Qt server
- the pure-Python ``LocalSocketChannel`` → Qt server
- Qt client → the pure-Python ``LocalSocketChannelServer``
- Qt client → Qt server

Blocking plain-Python clients run on threads; the Qt objects live on the test's
main thread, whose loop ``qtbot.waitUntil`` (or a Qt-side wait) keeps running.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from qt_helpers import in_thread, serve_echo, unique_name
from rawclient import RawClient

from aurora_dcc.errors import Disconnected, ErrorCode, Unauthorized
from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets (rawclient)")


def serve_add(server: Any) -> list[Peer]:
    """Every connection gets a Peer serving ``add``; returns the (growing) list of them."""
    peers: list[Peer] = []

    def on_connection(conn: Any) -> None:
        peer = Peer(conn)
        peer.register("add", lambda a, b: a + b)
        peers.append(peer)

    server.on_connection(on_connection)
    return peers


@pytest.fixture
def qt_server(qapp: Any) -> Any:
    server = QtLocalSocketServer(unique_name(), token="s3cret", handler_names=["add"])
    server.peers = serve_add(server)
    yield server
    server.close()


@pytest.fixture
def plain_server() -> Any:
    server = LocalSocketChannelServer(unique_name(), token="s3cret", handler_names=["add"])
    server.peers = serve_add(server)
    yield server
    server.close()


def test_stdlib_client_from_protocol_md_talks_to_qt_server(qtbot: Any, qt_server: Any) -> None:
    events: list[IpcMessage] = []
    qt_server.on_connection(lambda conn: conn.on_message(events.append))
    got_event = threading.Event()

    def client() -> dict[str, Any]:
        with RawClient.connect(qt_server.name) as raw:
            ready = raw.hello(token="s3cret")
            result = raw.request("add", [2, 40], id="r1")
            missing = raw.request("nope", id="r2")
            raw.send({"type": "ping", "id": "p1"})
            pong = raw.recv_until(lambda f: f["type"] == "pong")
            raw.send({"type": "event", "event": "tool.started", "data": {"pid": 1}})
            got_event.wait(5.0)
            broadcast = raw.recv_until(lambda f: f["type"] == "event")
            return {"ready": ready, "result": result, "missing": missing, "pong": pong,
                    "broadcast": broadcast}  # fmt: skip

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(client()))
    thread.start()
    qtbot.waitUntil(lambda: any(m.type is IpcMessageType.EVENT for m in events), timeout=5000)
    qt_server.emit("scene.saved", {"path": "/shots/a.ma"})
    got_event.set()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=5000)
    assert result["ready"]["type"] == "ready"
    assert result["ready"]["data"]["protocol"] == 1
    assert result["ready"]["data"]["handlers"] == ["add"]
    assert result["result"] == {"type": "response", "id": "r1", "data": 42}
    assert result["missing"]["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert result["pong"] == {"type": "pong", "id": "p1", "data": {}}
    assert result["broadcast"]["event"] == "scene.saved"
    assert result["broadcast"]["data"] == {"path": "/shots/a.ma"}
    event = next(m for m in events if m.type is IpcMessageType.EVENT)
    assert (event.event, event.data) == ("tool.started", {"pid": 1})


def test_plain_clients_talk_to_qt_server(qtbot: Any, qt_server: Any) -> None:
    # A blocking plain connect() needs the Qt loop to answer its hello: run it on a thread.
    clients = in_thread(
        qtbot,
        lambda: [LocalSocketChannel.connect(qt_server.name, token="s3cret") for _ in range(3)],
    )
    try:
        peers = [Peer(c) for c in clients]
        results = in_thread(qtbot, lambda: [p.request("add", [i, 10]) for i, p in enumerate(peers)])
        assert results == [10, 11, 12]
        heard: list[list[Any]] = [[] for _ in clients]
        for peer, box in zip(peers, heard):
            peer.on("scene.*", lambda event, data, box=box: box.append((event, data)))
        qt_server.emit("scene.opened", {"path": "b.ma"})
        qtbot.waitUntil(lambda: all(box for box in heard), timeout=5000)
        assert heard == [[("scene.opened", {"path": "b.ma"})]] * 3
    finally:
        for client in clients:
            client.close()
    qtbot.waitUntil(lambda: qt_server.connections == [], timeout=5000)


def test_plain_client_with_wrong_token_is_refused_by_qt_server(qtbot: Any, qt_server: Any) -> None:
    def connect() -> None:
        LocalSocketChannel.connect(qt_server.name, token="wrong", timeout=5.0)

    with pytest.raises(Unauthorized):
        in_thread(qtbot, connect)


def test_qt_client_talks_to_plain_server(qtbot: Any, plain_server: Any) -> None:
    channel = QtLocalSocketChannel.connect(plain_server.name, token="s3cret")
    assert channel.peer_info["handlers"] == ["add"]
    peer = Peer(channel)
    assert peer.request("add", [20, 22], timeout=5.0) == 42  # waits with the loop running
    heard: list[tuple[str, Any]] = []
    peer.on("scene.*", lambda event, data: heard.append((event, data)))
    plain_server.emit("scene.closed", {"path": "c.ma"})
    qtbot.waitUntil(lambda: heard == [("scene.closed", {"path": "c.ma"})], timeout=5000)
    # The plain server calls a handler the Qt client offers, and hears its answer.
    peer.register("dcc.version", lambda: "2025.1")
    server_peer = plain_server.peers[0]
    answer = in_thread(qtbot, lambda: server_peer.request("dcc.version", timeout=5.0))
    assert answer == "2025.1"


def test_qt_client_refused_and_disconnected_by_plain_server(qtbot: Any, plain_server: Any) -> None:
    with pytest.raises(Unauthorized):
        QtLocalSocketChannel.connect(plain_server.name, token="wrong")
    channel = QtLocalSocketChannel.connect(plain_server.name, token="s3cret")
    plain_server.close()
    assert channel.receive(timeout=5.0).type is IpcMessageType.BYE  # since 1.1, then the close
    with pytest.raises(Disconnected):
        channel.receive(timeout=5.0)


def test_qt_client_talks_to_qt_server(qtbot: Any, qt_server: Any) -> None:
    with pytest.raises(Unauthorized):
        QtLocalSocketChannel.connect(qt_server.name, token="wrong")
    channel = QtLocalSocketChannel.connect(qt_server.name, token="s3cret")
    assert channel.peer_info["handlers"] == ["add"]
    peer = Peer(channel)
    assert [peer.request("add", [i, i], timeout=5.0) for i in range(50)] == [
        2 * i for i in range(50)
    ]


def test_echo_many_messages_between_qt_client_and_both_servers(
    qtbot: Any, qt_server: Any, plain_server: Any
) -> None:
    """Pipelined traffic (many frames per read) arrives whole and in order."""
    qt_echo = QtLocalSocketServer(unique_name())
    serve_echo(qt_echo)
    plain_echo = LocalSocketChannelServer(unique_name())

    def plain_on_connection(conn: Any) -> None:
        conn.on_message(lambda msg: conn.send(IpcMessage.response(msg.id, msg.data)))

    plain_echo.on_connection(plain_on_connection)
    try:
        for server in (qt_echo, plain_echo):
            channel = QtLocalSocketChannel.connect(server.name)
            for i in range(2000):
                channel.send(IpcMessage.request("echo", {"i": i, "pad": "x" * (i % 300)}))
            got = [channel.receive(timeout=5.0).data["i"] for _ in range(2000)]
            assert got == list(range(2000))
            channel.close()
    finally:
        qt_echo.close()
        plain_echo.close()
