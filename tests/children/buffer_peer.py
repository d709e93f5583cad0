"""Child process for the shared-memory tests: a sender or a receiver to be killed.

``buffer_peer.py serve NAME``: a ``LocalSocketChannelServer`` whose ``points``
request returns ``n`` float32 zeros (shared memory above the threshold); prints
``serving`` once listening.
``buffer_peer.py hold NAME``: connects with ``zero_copy`` settings, calls
``points`` with ``n=262144`` three times and keeps the results (the server's
blocks stay lent); prints ``holding``.
``buffer_peer.py orphan``: lends two blocks of a pool nobody will return; prints
``lent <prefix>``.
Each then waits until its stdin closes (or it is killed).
"""

from __future__ import annotations

import sys
from typing import Any

from aurora_dcc.protocol.buffers import configure_buffers
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.rpc.server import RpcServer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer
from aurora_dcc.transport.shared_memory import BlockPool, connection_prefix


def serve(name: str) -> None:
    import array

    server = LocalSocketChannelServer(name)
    rpc = RpcServer(server)
    rpc.register("points", lambda n: array.array("f", bytes(4 * n)))
    print("serving", flush=True)
    sys.stdin.read()
    rpc.close()
    server.close()


def hold(name: str) -> None:
    configure_buffers(zero_copy=True)
    channel = LocalSocketChannel.connect(name, retry=50)
    peer = Peer(channel)
    kept: list[Any] = [peer.request("points", {"n": 262144}, timeout=10.0) for _ in range(3)]
    print("holding", len(kept), flush=True)
    sys.stdin.read()


def orphan() -> None:
    pool = BlockPool(connection_prefix(), max_bytes=1 << 24)
    for _ in range(2):
        pool.lend(memoryview(bytes(100_000)), wait=None)
    print("lent", pool.prefix, flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "serve":
        serve(sys.argv[2])
    elif mode == "hold":
        hold(sys.argv[2])
    else:
        orphan()
