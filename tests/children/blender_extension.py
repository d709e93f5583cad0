"""Install the add-on zip as a Blender 4.2+ extension, in the ``bpy`` module, and use it.

Usage: ``blender_extension.py <zip> <channel>``, with ``BLENDER_USER_RESOURCES``
pointing at an empty folder (the extension and its wheel are installed there).
Installs the zip as Blender's "Install from Disk" does (enabling it starts the
host), serves one request, disables the extension, and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

addon_zip, channel = sys.argv[1], sys.argv[2]
os.environ["AURORA_DCC_BLENDER_CHANNEL"] = channel

from bpy_module import bpy, remove_bpy_tmpdir  # noqa: E402, I001 - before addon_utils

import addon_utils  # noqa: E402 - on sys.path once bpy is imported

MODULE = "bl_ext.user_default.aurora_dcc_blender"

installed = bpy.ops.extensions.package_install_files(
    filepath=addon_zip, repo="user_default", enable_on_install=True
)
from aurora_dcc.hosts import blender as aurora_blender  # noqa: E402 - from the extension's wheel
from aurora_dcc.rpc.peer import Peer  # noqa: E402
from aurora_dcc.transport.local_socket import LocalSocketChannel  # noqa: E402

host = aurora_blender.current_host()
assert host is not None, "enabling the extension started no host"
answer: dict[str, Any] = {}


def client() -> None:
    with LocalSocketChannel.connect(channel, timeout=10.0) as connection:
        peer = Peer(connection)
        answer["ls"] = peer.request("scene.ls", {"pattern": "C*"}, timeout=10.0)
        peer.close()


thread = threading.Thread(target=client)
thread.start()
aurora_blender.pump(30.0, until=lambda: not thread.is_alive())
thread.join(timeout=10.0)

panel = hasattr(bpy.types, "AURORA_PT_host")
addon_utils.disable(MODULE, default_set=True)
report = {
    "installed": sorted(installed),
    "aurora_dcc": sys.modules["aurora_dcc"].__file__,
    "ls": answer.get("ls"),
    "panel": panel,
    "host_after_disable": aurora_blender.current_host() is not None,
    "host_closed": host.closed,
    "socket_left": os.path.exists(host.server.address),
    "timer_registered": host.waker.timer_registered,
    "panel_after_disable": hasattr(bpy.types, "AURORA_PT_host"),
}
print(json.dumps(report), flush=True)
remove_bpy_tmpdir()
