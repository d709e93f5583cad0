"""Peer over the Qt local socket, all on the Qt main thread (how a DCC runs it).

Handlers run on the main thread; a blocking ``request`` made on the main
thread keeps the Qt loop running while it waits, so a handler may even call
the other side back; a server that goes away fails in-flight requests with
-32002 at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from qt_helpers import unique_name

from aurora_dcc import ErrorCode
from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer

WAIT = 10.0


Setup = tuple[HandlerRegistry, QtLocalSocketServer, list[Peer], Peer]


@pytest.fixture
def qt_peers(qapp: Any) -> Iterator[Setup]:
    """A Qt server serving one registry (a Peer per connection) and a Qt client Peer."""
    name = unique_name()
    registry = HandlerRegistry()
    server = QtLocalSocketServer(name)
    registry.subscribe(lambda: server.set_handler_names(registry.names()))
    server_peers: list[Peer] = []
    server.on_connection(
        lambda conn: server_peers.append(Peer(conn, registry=registry, name="dcc"))
    )
    client = Peer(QtLocalSocketChannel.connect(name, timeout=WAIT), name="tool")
    yield registry, server, server_peers, client
    client.channel.close()
    server.close()


def test_handlers_run_on_the_main_thread_and_can_call_back(qt_peers: Setup) -> None:
    registry, _, server_peers, client = qt_peers
    main = threading.get_ident()
    threads: list[int] = []
    client.register("tool.version", lambda: "1.2")

    def scene_info() -> dict[str, Any]:
        threads.append(threading.get_ident())
        # A blocking call back to the client, from inside a handler on the main thread.
        return {"nodes": 3, "tool": server_peers[0].request("tool.version", timeout=WAIT)}

    registry.register("scene.info", scene_info)
    assert client.request("scene.info", timeout=WAIT) == {"nodes": 3, "tool": "1.2"}
    assert threads == [main]
    assert client.ping(timeout=WAIT) > 0


def test_server_gone_mid_request_fails_it_with_32002(qt_peers: Setup) -> None:
    registry, server, _, client = qt_peers
    # The handler closes its own connection instead of answering: the backend "dies".
    registry.register("vanish", lambda: server.connections[0].close())
    started = time.monotonic()
    with pytest.raises(IpcCallError) as info:
        client.request("vanish", timeout=60.0)
    assert info.value.code == ErrorCode.SHUTTING_DOWN
    assert time.monotonic() - started < WAIT
    with pytest.raises(IpcCallError) as info:
        client.request("vanish")
    assert info.value.code == ErrorCode.SHUTTING_DOWN
