"""Child process: many concurrent stdlib-socket clients doing request/response round trips.

Usage: python qt_load_clients.py NAME_OR_PATH CLIENTS ROUNDS CLIENT_OFFSET

Each client opens its own Unix socket, says ``hello``, waits for ``ready``, then
does ROUNDS sequential requests (one in flight per client, all clients at
once, driven by one ``selectors`` loop) and checks that every response carries
its own request's id and data. Prints one JSON line:
``{"answered": n, "mixed_up": n, "errors": [...]}``; exits 0 only if all is well.
Written from PROTOCOL.md with stdlib only (no aurora_dcc).
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time


def main() -> int:
    path, clients, rounds, offset = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    selector = selectors.DefaultSelector()
    state: dict[socket.socket, dict] = {}
    for k in range(clients):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0)
        sock.connect(path)
        hello = {
            "type": "hello",
            "data": {"protocol": 1, "peer": f"load-{offset + k}", "pid": os.getpid()},
        }
        sock.sendall(json.dumps(hello).encode() + b"\n")
        sock.setblocking(False)
        state[sock] = {"client": offset + k, "seq": 0, "buffer": b"", "ready": False}
        selector.register(sock, selectors.EVENT_READ)
    answered = mixed_up = 0
    errors: list[str] = []
    remaining = clients
    deadline = time.monotonic() + 120.0

    def send_next(sock: socket.socket, st: dict) -> None:
        client, seq = st["client"], st["seq"]
        request = {
            "type": "request",
            "id": f"c{client}-{seq}",
            "method": "echo",
            "data": {"client": client, "seq": seq},
        }
        sock.sendall(json.dumps(request).encode() + b"\n")  # small: fits the socket buffer

    while remaining and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            st = state[sock]
            chunk = sock.recv(65536)
            if not chunk:
                errors.append(f"client {st['client']}: server closed the connection")
                selector.unregister(sock)
                remaining -= 1
                continue
            lines = (st["buffer"] + chunk).split(b"\n")
            st["buffer"] = lines.pop()
            for line in lines:
                if not line:
                    continue
                frame = json.loads(line)
                if not st["ready"]:
                    if frame.get("type") != "ready":
                        errors.append(f"client {st['client']}: expected ready, got {frame}")
                    st["ready"] = True
                else:
                    expected_id = f"c{st['client']}-{st['seq']}"
                    expected = {"client": st["client"], "seq": st["seq"]}
                    if frame.get("id") != expected_id or frame.get("data") != expected:
                        mixed_up += 1
                    else:
                        answered += 1
                    st["seq"] += 1
                if st["seq"] < rounds:
                    send_next(sock, st)
                else:
                    selector.unregister(sock)
                    remaining -= 1
    if remaining:
        errors.append(f"{remaining} client(s) unfinished at the deadline")
    for sock in state:
        sock.close()
    print(json.dumps({"answered": answered, "mixed_up": mixed_up, "errors": errors[:10]}))
    return 0 if not errors and not mixed_up and answered == clients * rounds else 1


if __name__ == "__main__":
    sys.exit(main())
