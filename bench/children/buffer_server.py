"""Child process: the host side of ``bench/bench_buffers.py`` (the host sends, the tool receives).

Usage: ``python buffer_server.py MODE ADDRESS MAX_BYTES``

* ``raw``: a plain AF_UNIX socket at ADDRESS. The client sends ``b"<n>\\n"``; the
  server answers with the first n bytes of its payload in one ``sendall``: the
  floor of a socket, no framing, no JSON.
* ``plain`` / ``qt``: an ``RpcServer`` over a ``LocalSocketChannelServer`` (its
  handlers on the connection's reader thread, as in Blender's socket layer)
  or a ``QtLocalSocketServer`` (handlers on the Qt thread, as in a Qt DCC).
  Handlers: ``bench.buffer(size)`` returns the first ``size`` bytes of the
  payload as a buffer (a ``memoryview``: shared memory where the client
  negotiated it), ``bench.base64(size)`` returns them as base64 text (the way
  before buffers existed), ``bench.echo(**data)`` returns ``data`` (the
  100-byte round trip).

The payload (MAX_BYTES) is made once, before ``listening`` is printed. Every
server exits when its client hangs up. ``AURORA_BENCH_TREE`` (a directory)
imports ``aurora_dcc`` from another source tree (the round trip "before").
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.environ.get("AURORA_BENCH_TREE") or REPO)


def listening() -> None:
    sys.stdout.write("listening\n")
    sys.stdout.flush()


def max_frame(max_bytes: int) -> int:
    """A frame limit that lets the base64 of ``max_bytes`` through (4/3 of it, and room)."""
    return max(16 << 20, max_bytes * 4 // 3 + (1 << 20))


def make_payload(size: int) -> bytearray:
    """``size`` bytes, every page touched (a repeating 0..250 pattern, not all zeros)."""
    pattern = bytes(range(251))
    payload = bytearray(pattern * (size // len(pattern) + 1))
    del payload[size:]
    return payload


def serve_raw(path: str, payload: bytearray) -> None:
    view = memoryview(payload)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listening()
    conn, _ = listener.accept()
    listener.close()
    os.unlink(path)
    reader = conn.makefile("rb")
    while True:
        line = reader.readline()
        if not line:
            return
        conn.sendall(view[: int(line)])


def handlers(payload: bytearray) -> dict[str, Callable[..., Any]]:
    view = memoryview(payload)

    def buffer(size: int) -> memoryview:
        return view[:size]

    def as_base64(size: int) -> str:
        return base64.b64encode(view[:size]).decode("ascii")

    def echo(**data: Any) -> Any:
        return data

    return {"bench.buffer": buffer, "bench.base64": as_base64, "bench.echo": echo}


def serve_plain(name: str, payload: bytearray) -> None:
    from aurora_dcc.rpc.server import RpcServer
    from aurora_dcc.transport.local_socket import LocalSocketChannelServer

    server = LocalSocketChannelServer(name, max_frame=max_frame(len(payload)))
    rpc = RpcServer(server)
    rpc.registry.update(handlers(payload))
    listening()
    conn = server.accept(timeout=60.0)
    hung_up = threading.Event()
    conn.shutdown_state.on_shutdown(hung_up.set)
    hung_up.wait()
    rpc.close()


def serve_qt(name: str, payload: bytearray) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtpy import QtCore

    from aurora_dcc.qt.local_socket import QtLocalSocketServer
    from aurora_dcc.rpc.server import RpcServer

    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    server = QtLocalSocketServer(name, max_frame=max_frame(len(payload)))
    server.on_connection(lambda conn: conn.shutdown_state.on_shutdown(app.quit))
    rpc = RpcServer(server)
    rpc.registry.update(handlers(payload))
    listening()
    app.exec()
    rpc.close()


SERVERS: dict[str, Callable[[str, bytearray], None]] = {
    "raw": serve_raw,
    "plain": serve_plain,
    "qt": serve_qt,
}


def exit_with_parent() -> None:
    """Leave when the benchmark dies, even if no socket tells us."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    os.umask(0o077)
    exit_with_parent()
    mode, address, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    SERVERS[mode](address, make_payload(max_bytes))
