"""Helpers for the Qt local-socket tests: unique names, servers, threads and child processes.

Blocking clients (stdlib sockets, ``RawClient``, ``LocalSocketChannel``) run on
other threads or in child processes while the test's main thread keeps the Qt
loop running with ``qtbot.waitUntil``: the Qt server lives on that loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any, Callable

from support import unique_channel_name

from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.qt.local_socket import QtLocalSocketServer

CHILDREN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "children")


def unique_name() -> str:
    """A channel name no other test uses (``support.unique_channel_name``)."""
    return unique_channel_name("aqt")


def serve_echo(server: QtLocalSocketServer) -> None:
    """Answer every request on every connection with its own data (on the Qt thread)."""

    def on_connection(conn: Any) -> None:
        def on_message(msg: IpcMessage) -> None:
            if msg.type is IpcMessageType.REQUEST:
                conn.send(IpcMessage.response(msg.id, msg.data))

        conn.on_message(on_message)

    server.on_connection(on_connection)


def in_thread(qtbot: Any, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run blocking ``fn`` on a thread while the Qt loop keeps running; return its result."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=int(timeout * 1000))
    if "error" in result:
        raise result["error"]
    return result.get("value")


class Child:
    """A child Python process from tests/children whose stdout lines are collected."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(CHILDREN, script), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, qtbot: Any, text: str, timeout: float = 10.0) -> None:
        qtbot.waitUntil(lambda: text in self.lines, timeout=int(timeout * 1000))

    def wait_exit(self, qtbot: Any, timeout: float = 30.0) -> int:
        qtbot.waitUntil(lambda: self.proc.poll() is not None, timeout=int(timeout * 1000))
        self._reader.join(5.0)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)
