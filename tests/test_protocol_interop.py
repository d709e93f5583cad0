"""PROTOCOL.md, both ways: a stdlib-only client (tests/rawclient.py) against the
pure-Python server, and our client against a stdlib-only server written from the page."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from rawclient import RawClient, socket_path

from aurora_dcc import IpcMessage, IpcMessageType
from aurora_dcc.channel.base import IpcChannel
from aurora_dcc.errors import Unauthorized
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets (rawclient)")

WAIT = 5.0


@pytest.fixture
def name(channel_name: str) -> str:
    return channel_name  # conftest's unique name, under this file's short fixture name


def echo_requests(conn: IpcChannel) -> None:
    """The application above the server: answers ``echo``, refuses other methods."""

    def answer(msg: IpcMessage) -> None:
        if msg.type is not IpcMessageType.REQUEST:
            return
        if msg.method == "echo":
            conn.send(IpcMessage.response(msg.id, msg.data))
        else:
            conn.send(IpcMessage.error_response(msg.id, -32601, f"no handler {msg.method!r}"))

    conn.on_message(answer)


@pytest.fixture
def server(name: str) -> Iterator[LocalSocketChannelServer]:
    srv = LocalSocketChannelServer(name, token="s3cret", handler_names=["echo"])
    srv.on_connection(echo_requests)
    try:
        yield srv
    finally:
        srv.close()


def test_the_socket_is_where_the_protocol_says(server: LocalSocketChannelServer) -> None:
    assert server.address == socket_path(server.name)


def test_a_stdlib_client_says_hello_calls_pings_and_hears_events(
    server: LocalSocketChannelServer,
) -> None:
    with RawClient.connect(server.name) as raw:
        ready = raw.hello(token="s3cret")
        assert ready["type"] == "ready"
        assert ready["data"]["protocol"] == 1
        assert ready["data"]["handlers"] == ["echo"]
        assert isinstance(ready["data"]["peer"], str)

        response = raw.request("echo", {"text": "héllo ✓"}, id="r1")
        assert response == {"type": "response", "id": "r1", "data": {"text": "héllo ✓"}}
        missing = raw.request("nope", id="r2")
        assert missing["error"]["code"] == -32601

        raw.send({"type": "ping", "id": "p1"})
        pong = raw.recv(timeout=WAIT)
        assert (pong["type"], pong["id"]) == ("pong", "p1")

        server.emit("scene.saved", {"path": "shot.ma"})
        event = raw.recv(timeout=WAIT)
        assert event == {"type": "event", "event": "scene.saved", "data": {"path": "shot.ma"}}


def test_frames_may_be_split_batched_crlf_and_padded_with_empty_lines(
    server: LocalSocketChannelServer,
) -> None:
    with RawClient.connect(server.name) as raw:
        raw.hello(token="s3cret")
        frames = b"".join(
            json.dumps({"type": "request", "id": f"b{i}", "method": "echo", "data": i}).encode()
            + (b"\r\n" if i % 2 else b"\n\n")
            for i in range(50)
        )
        raw.send_raw(frames)  # many frames in one write
        assert [raw.recv(timeout=WAIT)["data"] for _ in range(50)] == list(range(50))
        one = b'{"type":"request","id":"s1","method":"echo","data":"split"}\n'
        for i in range(len(one)):  # one frame over many writes
            raw.send_raw(one[i : i + 1])
        assert raw.recv(timeout=WAIT)["id"] == "s1"


def test_unknown_fields_are_ignored_and_null_fields_left_out(
    server: LocalSocketChannelServer,
) -> None:
    with RawClient.connect(server.name) as raw:
        raw.hello(token="s3cret")
        raw.send({"type": "request", "id": "u1", "method": "echo", "data": None, "future": [1, 2]})
        reply = raw.recv(timeout=WAIT)
        assert reply == {"type": "response", "id": "u1", "data": {}}


def test_a_client_that_offers_handlers_announces_them_after_ready(
    server: LocalSocketChannelServer,
) -> None:
    with RawClient.connect(server.name) as raw:
        raw.hello(token="s3cret")
        conn = server.accept(timeout=WAIT)
        assert isinstance(conn, LocalSocketChannel)
        seen: list[IpcMessage] = []
        arrived = threading.Event()
        conn.on_message(lambda msg: (seen.append(msg), arrived.set()))
        raw.send({"type": "ready", "data": {"protocol": 1, "peer": "raw", "handlers": ["tool"]}})
        assert arrived.wait(WAIT)
        assert seen[0].type is IpcMessageType.READY
        assert conn.peer_info["handlers"] == ["tool"]


def test_a_tokenless_server_serves_a_client_that_skips_hello(name: str) -> None:
    with LocalSocketChannelServer(name) as server:
        server.on_connection(echo_requests)
        with RawClient.connect(name) as raw:
            raw.send({"type": "request", "id": "q1", "method": "echo", "data": [1]})
            # no ready: only the response it is owed
            assert raw.recv(timeout=WAIT) == {"type": "response", "id": "q1", "data": [1]}
            server.emit("tick")
            assert raw.recv(timeout=WAIT)["event"] == "tick"


@contextlib.contextmanager
def stdlib_listener(name: str) -> Iterator[socket.socket]:
    """A listening Unix socket where PROTOCOL.md puts channel ``name``; removed after."""
    path = socket_path(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    listener.settimeout(WAIT)
    try:
        yield listener
    finally:
        listener.close()
        os.unlink(path)


def test_our_client_against_a_stdlib_server_written_from_the_protocol(name: str) -> None:
    seen: list[dict[str, object]] = []

    def serve_one(token: str) -> None:
        conn, _ = listener.accept()
        raw = RawClient(conn)
        try:
            hello = raw.recv(timeout=WAIT)
            seen.append(hello)
            data = hello["data"]
            if data.get("token") != token:
                raw.send({"type": "response", "error": {"code": -32003, "message": "no"}})
                return
            raw.send({"type": "ready", "data": {"protocol": 1, "peer": "raw", "handlers": []}})
            request = raw.recv(timeout=WAIT)
            seen.append(request)
            raw.send({"type": "event", "event": "working", "extra": True})
            raw.send({"type": "response", "id": request["id"], "data": {"ok": True}})
            raw.recv(timeout=WAIT)  # until the client closes
        except EOFError:
            pass
        finally:
            raw.close()

    with stdlib_listener(name) as listener:
        thread = threading.Thread(target=serve_one, args=("t0k",))
        thread.start()
        with LocalSocketChannel.connect(name, token="t0k", timeout=WAIT) as client:
            assert client.peer_info["peer"] == "raw"
            client.send(IpcMessage.request("job.run", {"frames": 10}, id="j1"))
            assert client.receive(WAIT).event == "working"
            reply = client.receive(WAIT)
            assert (reply.type, reply.id, reply.data) == (
                IpcMessageType.RESPONSE,
                "j1",
                {"ok": True},
            )
        thread.join(WAIT)
        hello = seen[0]["data"]
        assert isinstance(hello, dict)
        assert (hello["protocol"], hello["token"]) == (1, "t0k")
        assert seen[1] == {
            "type": "request",
            "id": "j1",
            "method": "job.run",
            "data": {"frames": 10},
        }

        thread = threading.Thread(target=serve_one, args=("other",))
        thread.start()
        with pytest.raises(Unauthorized):
            LocalSocketChannel.connect(name, token="t0k", timeout=WAIT)
        thread.join(WAIT)


def test_every_request_gets_an_answer_even_when_the_reply_is_over_the_limit(name: str) -> None:
    """A result over the frame limit answers -32004; an error whose message and traceback
    are over it is trimmed, keeping its code: the caller never waits for its timeout."""
    registry = HandlerRegistry()
    registry.register("big", lambda: "x" * 10_000)

    def raises_big() -> None:
        raise ValueError("y" * 10_000)

    registry.register("raises_big", raises_big)
    registry.register("fails_big", lambda: _raise_call_error({"blob": "z" * 10_000}))
    with LocalSocketChannelServer(name, max_frame=4096) as server:
        server.on_connection(lambda conn: Peer(conn, registry=registry, name="host"))
        with RawClient.connect(name) as raw:
            raw.hello()
            big = raw.request("big", id="b1")
            assert big["id"] == "b1" and big["error"]["code"] == -32004
            assert "too large" in big["error"]["message"]
            raised = raw.request("raises_big", id="b2")
            assert raised["id"] == "b2" and raised["error"]["code"] == -32603
            assert raised["error"]["data"]["type"] == "ValueError"
            assert len(json.dumps(raised)) < 4096
            failed = raw.request("fails_big", id="b3")
            assert failed["id"] == "b3" and failed["error"]["code"] == -32001
            assert raw.request("big_method_name" * 200, id="b4")["error"]["code"] == -32601
            raw.send({"type": "ping", "id": "after"})
            assert raw.recv(timeout=WAIT)["id"] == "after"  # the connection still serves


def _raise_call_error(data: object) -> None:
    raise IpcCallError(-32001, "custom failure " + "w" * 5000, data)


def test_buffers_reach_a_stdlib_server_inline_when_it_announced_no_shared_memory(
    name: str,
) -> None:
    """Our hello offers shared memory (since 1.1); a server whose ready has no ``buffers``
    still gets every buffer, inline, as PROTOCOL.md "Buffers (1.1)" describes."""
    seen: list[dict[str, Any]] = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with RawClient(conn) as raw:
            seen.append(raw.recv(timeout=WAIT))
            raw.send({"type": "ready", "data": {"protocol": 1, "peer": "raw", "handlers": []}})
            seen.append(raw.recv(timeout=WAIT))

    payload = bytes(range(256)) * 1024  # 256 KiB: shared memory for a peer that offered it
    with stdlib_listener(name) as listener:
        thread = threading.Thread(target=serve_one)
        thread.start()
        with LocalSocketChannel.connect(name, timeout=WAIT) as client:
            client.send(IpcMessage.request("put", {"blob": payload, "$tag": 1}, id="p1"))
            thread.join(WAIT)
    offer = seen[0]["data"]["buffers"]
    assert offer["shm"] is True and isinstance(offer["prefix"], str)
    request = seen[1]
    assert request["buffers"] == 1 and request["data"]["$$tag"] == 1
    body = request["data"]["blob"]["$buffer"]
    assert (body["format"], body["shape"]) == ("B", [len(payload)])
    assert base64.b64decode(body["data"]) == payload


def test_a_stdlib_client_sends_and_gets_back_inline_buffers(
    server: LocalSocketChannelServer,
) -> None:
    data = base64.b64encode(b"\x00\x01\x02\x03").decode()
    with RawClient.connect(server.name) as raw:
        ready = raw.hello(token="s3cret")
        assert ready["data"]["buffers"]["shm"] is True  # offered; this client did not ask
        raw.send(
            {
                "type": "request",
                "id": "b1",
                "method": "echo",
                "buffers": 1,
                "data": {"raw": {"$buffer": {"format": "B", "shape": [4], "data": data}}},
            }
        )
        reply = raw.recv_until(lambda frame: frame.get("id") == "b1")
    assert reply["buffers"] == 1
    assert base64.b64decode(reply["data"]["raw"]["$buffer"]["data"]) == b"\x00\x01\x02\x03"
