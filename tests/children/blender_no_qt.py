"""Import aurora_dcc as Blender's own Python would: without qtpy, PySide, shiboken or orjson.

Blocks those imports, imports the package and the Blender host's modules, serves
one request over the pure-Python socket server, and prints one JSON line:
which blocked modules were asked for, the codec's backend and the reply.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

BLOCKED = ("qtpy", "PySide6", "PySide2", "shiboken6", "shiboken2", "orjson", "bpy")
asked: list[str] = []


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[Any]:
        if name.split(".")[0] in BLOCKED:
            asked.append(name)
            raise ImportError(f"{name} is blocked (not installed in Blender's Python)")
        return None


sys.meta_path.insert(0, Block())

import aurora_dcc  # noqa: E402
import aurora_dcc.hosts.blender  # noqa: E402
import aurora_dcc.hosts.blender_scene  # noqa: E402
from aurora_dcc.protocol import codec  # noqa: E402
from aurora_dcc.rpc.peer import Peer  # noqa: E402
from aurora_dcc.rpc.server import RpcServer  # noqa: E402

name = sys.argv[1]
with RpcServer(aurora_dcc.LocalSocketChannelServer(name)) as rpc:
    rpc.register("echo", lambda text: text)
    channel = aurora_dcc.LocalSocketChannel.connect(name, timeout=10.0)
    peer = Peer(channel)
    reply = peer.request("echo", {"text": "no Qt"}, timeout=10.0)
    peer.close()
    channel.close()

print(json.dumps({"asked": asked, "codec": codec.BACKEND, "reply": reply}), flush=True)
