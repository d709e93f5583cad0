"""A protocol client written from PROTOCOL.md alone: stdlib ``socket`` + ``json``.

It imports nothing from ``aurora_dcc`` on purpose: tests use it to prove that
a client we did not write can talk to our servers (the Qt one and the plain
Python one). Unix only (a Unix domain socket), like the tests that use it.

Usage::

    with RawClient.connect("auroraview_4711") as client:
        ready = client.hello(token="s3cret")          # the server's ready frame
        client.send({"type": "ping", "id": "p1"})
        client.recv()                                 # {'type': 'pong', 'id': 'p1'}
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Optional


def socket_path(name: str) -> str:
    """PROTOCOL.md, "Transport" (1.1): ``name`` if absolute, else inside the private
    directory ``$XDG_RUNTIME_DIR/aurora_dcc`` or ``<temp dir>/aurora_dcc-<uid>``."""
    if os.path.isabs(name):
        return name
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(os.path.normpath(runtime), "aurora_dcc", name)
    temp = os.path.normpath(os.environ.get("TMPDIR") or "/tmp")
    return os.path.join(temp, f"aurora_dcc-{os.geteuid()}", name)


class RawClient:
    """A blocking newline-delimited JSON client over one Unix socket.

    ``recv`` keeps partial frames across reads and returns one decoded frame at
    a time; every wait has a timeout (``socket.timeout`` / ``TimeoutError``).
    ``recv`` raises ``EOFError`` once the server has closed the connection.
    """

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self._buffer = b""

    @classmethod
    def connect(cls, name: str, timeout: float = 5.0) -> RawClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path(name))
        except OSError:
            sock.close()
            raise
        return cls(sock, timeout)

    # -- sending -----------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Send one JSON value as a frame."""
        self.send_raw(json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n")

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (bad frames, partial frames, several frames)."""
        self.sock.sendall(data)

    def hello(self, token: Optional[str] = None, protocol: int = 1) -> dict[str, Any]:
        """Send ``hello``; return the server's answer (``ready``, or an error response)."""
        data: dict[str, Any] = {"protocol": protocol, "peer": "rawclient", "pid": os.getpid()}
        if token is not None:
            data["token"] = token
        self.send({"type": "hello", "data": data})
        return self.recv()

    # -- receiving ---------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> dict[str, Any]:
        """The next frame, decoded; skips empty lines; ``EOFError`` when the server closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                line = line.rstrip(b"\r")
                if line:
                    frame: dict[str, Any] = json.loads(line.decode("utf-8"))
                    return frame
                continue
            if deadline is not None:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self._buffer += chunk

    def recv_until(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Frames are read until ``predicate(frame)`` is true; that frame is returned."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(timeout=max(0.001, deadline - time.monotonic()))
            if predicate(frame):
                return frame

    def request(self, method: str, data: Any = None, id: str = "r1") -> dict[str, Any]:
        """Send a request; return its response (frames in between are skipped)."""
        frame: dict[str, Any] = {"type": "request", "id": id, "method": method}
        if data is not None:
            frame["data"] = data
        self.send(frame)
        return self.recv_until(lambda f: f.get("type") == "response" and f.get("id") == id)

    def is_closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server closes the connection (frames before that are skipped)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv(timeout=max(0.001, deadline - time.monotonic()))
        except EOFError:
            return True
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
