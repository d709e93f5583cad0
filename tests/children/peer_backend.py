"""Child process: a packed-style backend, a ``Peer`` over ``LocalSocketChannel``.

Usage: python peer_backend.py CHANNEL_NAME

Connects to the server of CHANNEL_NAME, announces its handlers in a ``ready``
and serves them until the connection closes:

- ``echo(**data)``: returns ``data``.
- ``call_host(method)``: calls ``method`` back on the host and returns its result.
- ``host_handlers()``: the host's handler names, as this side's Peer knows them.
- ``crash()``: the process dies at once (``os._exit``), mid-request.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel


def main() -> int:
    channel = LocalSocketChannel.connect(sys.argv[1], timeout=10.0, retry=20)
    gone = threading.Event()
    channel.shutdown_state.on_shutdown(gone.set)
    with ThreadPoolExecutor(max_workers=4) as pool:
        peer = Peer(channel, name="backend", executor=pool)

        @peer.handler("echo")
        def echo(**data: Any) -> dict[str, Any]:
            return data

        @peer.handler("call_host")
        def call_host(method: str) -> Any:
            return peer.request(method, timeout=10.0)

        @peer.handler("host_handlers")
        def host_handlers() -> list[str]:
            return peer.remote_handler_names

        @peer.handler("crash")
        def crash() -> None:
            os._exit(3)

        peer.announce()
        gone.wait(60.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
