"""Child process: a minimal protocol server written with stdlib only, to be killed.

Usage: python qt_raw_server.py PATH

Listens on PATH, accepts one client, answers its ``hello`` with ``ready``,
prints ``ready`` and then sleeps until it is killed (the test SIGKILLs it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def main() -> int:
    path = sys.argv[1]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("listening", flush=True)
    conn, _ = listener.accept()
    buffer = b""
    while b"\n" not in buffer:
        buffer += conn.recv(65536)
    hello = json.loads(buffer.partition(b"\n")[0])
    assert hello["type"] == "hello", hello
    ready = {"type": "ready", "data": {"protocol": 1, "peer": "raw-server", "handlers": []}}
    conn.sendall(json.dumps(ready).encode() + b"\n")
    print("ready", flush=True)
    while True:
        time.sleep(60)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
