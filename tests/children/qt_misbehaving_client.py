"""Child process: a stdlib-socket client that misbehaves on purpose.

Usage: python qt_misbehaving_client.py PATH MODE [ARG]

Modes (each first says ``hello`` and waits for ``ready``, then prints ``ready``):

- ``half-frame``: sends half a frame and exits at once (dies mid-frame).
- ``stream``: sends requests without end (and half of one more each time),
  never reading, until it is killed.
- ``flood TOTAL``: sends TOTAL bytes of one endless frame (no newline) in
  64 KiB writes, then prints one JSON line ``{"sent": n, "reply": frame or
  null, "closed": bool}`` about what the server answered.
"""

from __future__ import annotations

import json
import os
import socket
import sys


def read_frame(sock: socket.socket, buffer: bytearray) -> dict | None:
    while b"\n" not in buffer:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def main() -> int:
    path, mode = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.connect(path)
    hello = {"type": "hello", "data": {"protocol": 1, "peer": mode, "pid": os.getpid()}}
    sock.sendall(json.dumps(hello).encode() + b"\n")
    buffer = bytearray()
    ready = read_frame(sock, buffer)
    assert ready is not None and ready["type"] == "ready", ready
    print("ready", flush=True)
    if mode == "half-frame":
        sock.sendall(b'{"type":"request","id":"half","meth')
        os._exit(0)
    if mode == "stream":
        request = b'{"type":"event","event":"tick","data":{"n":1}}\n'
        while True:
            sock.sendall(request * 50 + b'{"type":"event","ev')
            sock.sendall(b'ent":"tick"}\n')
    if mode == "flood":
        total, sent, chunk = int(sys.argv[3]), 0, b"a" * 65536
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_frame(sock, buffer)
        closed = read_frame(sock, buffer) is None
        print(json.dumps({"sent": sent, "reply": reply, "closed": closed}), flush=True)
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main())
