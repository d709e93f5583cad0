"""An external tool: connects to a running host, calls it and listens to its events.

Usage: ``python examples/tool.py <channel name>`` (or set AURORAVIEW_IPC_CHANNEL).
Only the pure-Python side of aurora_dcc is needed: no Qt in this process.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else os.environ["AURORAVIEW_IPC_CHANNEL"]
    channel = LocalSocketChannel.connect(name, token=os.environ.get("AURORAVIEW_IPC_TOKEN"))
    peer = Peer(channel, session_started=True)
    selected = threading.Event()

    def on_selection(event: str, data: Any) -> None:
        print(f"[tool] event {event}: {data['nodes']}", flush=True)
        selected.set()

    peer.on("selection.*", on_selection)
    cube = peer.request("scene.create", {"type": "cube"})
    sphere = peer.request("scene.create", {"type": "sphere"})
    on_main = peer.request("host.main_thread")
    print(f"[tool] created {cube}, {sphere} (handled on the host's main thread: {on_main})")
    peer.request("scene.select", {"nodes": [cube]})
    if not selected.wait(5):
        raise SystemExit("[tool] no selection.changed event within 5 s")
    best = min(peer.ping() for _ in range(20))
    print(f"[tool] ping {best * 1e6:.0f} µs (best of 20)", flush=True)
    peer.close()
    channel.close()


if __name__ == "__main__":
    main()
