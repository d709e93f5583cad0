"""Buffers through shared memory on the Qt side, with the pure-Python side as the peer.

A Qt server with a pure-Python client, and a Qt client with a pure-Python
server: big numpy arrays both ways (shared memory: one block each way),
broadcasts, and no block left once the connections are closed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from qt_helpers import in_thread, unique_name
from support import wait_until

from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer
from aurora_dcc.transport.shared_memory import USER_PREFIX, list_blocks

np = pytest.importorskip("numpy", reason="numpy is in the test extra")
pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not os.path.isdir("/dev/shm"), reason="reads /dev/shm (Linux)"
)

MINE = f"{USER_PREFIX}{os.getpid()}_"


@pytest.fixture(autouse=True)
def no_blocks_left() -> Iterator[None]:
    yield
    assert wait_until(lambda: not list_blocks(MINE), 5.0), list_blocks(MINE)


def serve_echo(server: Any) -> None:
    def on_connection(conn: Any) -> None:
        peer = Peer(conn)
        peer.register("echo", lambda value: value)
        conn.peer = peer

    server.on_connection(on_connection)


def points() -> Any:
    return np.arange(3 * 262144, dtype=np.float32).reshape(-1, 3)  # 3 MiB


def test_a_plain_client_and_a_qt_server_share_memory_both_ways(qtbot: Any, qapp: Any) -> None:
    server = QtLocalSocketServer(unique_name())
    serve_echo(server)
    heard: list[Any] = []
    try:
        client = in_thread(qtbot, lambda: LocalSocketChannel.connect(server.name))
        try:
            peer = Peer(client)
            peer.on("frame", lambda event, data: heard.append(data))
            sent = points()
            got = in_thread(qtbot, lambda: peer.request("echo", {"value": [sent]}, timeout=10.0))
            assert got[0].dtype == np.float32 and np.array_equal(got[0], sent)
            assert len(list_blocks(client.peer_info["buffers"]["prefix"])) == 1  # the Qt side's
            assert len(list_blocks(MINE)) == 2  # and the client's, in this same process
            server.emit("frame", {"image": sent})
            qtbot.waitUntil(lambda: len(heard) == 1, timeout=5000)
            assert np.array_equal(heard[0]["image"], sent)
        finally:
            client.close()
    finally:
        server.close()


def test_a_qt_client_and_a_plain_server_share_memory_both_ways(qtbot: Any, qapp: Any) -> None:
    server = LocalSocketChannelServer(unique_name())
    serve_echo(server)
    try:
        channel = QtLocalSocketChannel.connect(server.name)
        try:
            peer = Peer(channel)
            sent = points()
            for _ in range(20):  # the pools are reused: still one block each way
                got = peer.request("echo", {"value": {"p": sent, "n": 3}}, timeout=10.0)
                assert got["n"] == 3 and np.array_equal(got["p"], sent)
            assert len(list_blocks(channel.peer_info["buffers"]["prefix"])) == 1
            assert len(list_blocks(MINE)) == 2
        finally:
            channel.close()
    finally:
        server.close()
