"""RpcServer: one registry served to every client of a real LocalSocketChannelServer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.rpc.server import RpcServer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer


@pytest.fixture
def rpc(channel_name: str) -> Iterator[RpcServer]:
    server = LocalSocketChannelServer(channel_name)
    with RpcServer(server, name="host") as rpc_server:
        rpc_server.register("add", lambda a, b: a + b)
        yield rpc_server


def connect_client(rpc: RpcServer, name: str) -> Peer:
    peer = Peer(LocalSocketChannel.connect(rpc.server.name), name=name)
    peer.register("whoami", lambda: name)
    peer.announce()
    return peer


def test_every_client_is_served_and_can_be_called_back(rpc: RpcServer) -> None:
    clients = [connect_client(rpc, f"client-{i}") for i in range(2)]
    try:
        for client in clients:
            assert client.request("add", {"a": 1, "b": 2}, timeout=5.0) == 3
        assert len(rpc.peers) == 2
        for peer in rpc.peers:
            assert peer.wait_ready(5.0)
        assert sorted(p.request("whoami", timeout=5.0) for p in rpc.peers) == [
            "client-0",
            "client-1",
        ]
    finally:
        for client in clients:
            client.channel.close()


def test_emit_reaches_every_client_and_on_hears_every_client(rpc: RpcServer) -> None:
    heard: list[str] = []
    all_heard = threading.Event()

    def on_tool(event: str, data: dict[str, str]) -> None:
        heard.append(data["from"])
        if len(heard) == 2:
            all_heard.set()

    rpc.on("tool.*", on_tool)
    clients = [connect_client(rpc, f"client-{i}") for i in range(2)]
    got = [threading.Event() for _ in clients]
    try:
        for client, flag in zip(clients, got):
            client.on("selection.changed", lambda event, data, flag=flag: flag.set())
            client.emit("tool.done", {"from": client.name})
        assert all_heard.wait(5.0)
        assert sorted(heard) == ["client-0", "client-1"]
        rpc.emit("selection.changed", {"nodes": ["pCube1"]})
        assert all(flag.wait(5.0) for flag in got)
    finally:
        for client in clients:
            client.channel.close()


def test_a_registry_change_is_announced_once_to_each_client(rpc: RpcServer) -> None:
    client = connect_client(rpc, "client")
    readies: list[IpcMessage] = []
    announced = threading.Event()

    def on_message(msg: IpcMessage) -> None:
        if msg.type is IpcMessageType.READY:
            readies.append(msg)
            announced.set()

    client.channel.on_message(on_message)
    try:
        rpc.register("scene.info", lambda: {"nodes": 1})
        assert announced.wait(5.0)
        assert client.request("scene.info", timeout=5.0) == {"nodes": 1}  # after any 2nd ready
        assert len(readies) == 1
        assert readies[0].data["handlers"] == ["add", "scene.info"]
        assert client.remote_handler_names == ["add", "scene.info"]
    finally:
        client.channel.close()


def test_a_client_that_leaves_is_no_longer_among_the_peers(rpc: RpcServer) -> None:
    stays, leaves = connect_client(rpc, "stays"), connect_client(rpc, "leaves")

    def peers_become(count: int) -> bool:
        # The server makes a client's Peer on its own thread, a moment after
        # the client's connect() has returned.
        deadline = time.monotonic() + 5.0
        while len(rpc.peers) != count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(rpc.peers) == count

    try:
        assert peers_become(2)
        leaves.channel.close()
        assert peers_become(1)
        assert [peer.request("whoami", timeout=5.0) for peer in rpc.peers] == ["stays"]
    finally:
        stays.channel.close()
