"""Helpers for the CLI and discovery tests: a private runtime folder, hosts and CLI runs.

``Runtime`` points ``TMPDIR`` (where the per-user runtime folder, its sockets and
the discovery records live) and ``HOME`` at a fresh folder, for this process
and the children it starts, so the hosts a test starts are the only ones it
sees. Each test module wraps it in a fixture::

    @pytest.fixture
    def runtime(monkeypatch):
        with Runtime.open(monkeypatch) as runtime:
            yield runtime

    def test_it(runtime):
        host = runtime.serve()                        # `aurora-dcc serve`, listed
        assert runtime.cli("call", "scene.info").returncode == 0
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from support import CHILDREN, stop_child, wait_until

from aurora_dcc.process.discovery import HostRecord, list_hosts
from aurora_dcc.transport.address import runtime_dir

__all__ = ["Runtime", "read_line"]


_unread: dict[int, str] = {}  # pid -> what read_line read past its last line


def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 20.0) -> str:
    """The first line of ``proc``'s stdout that starts with ``prefix`` (bounded wait).

    Reads the pipe's descriptor itself: a buffered ``readline`` could keep the
    next lines in its buffer, where ``select`` cannot see them.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = _unread.pop(proc.pid, "")
    deadline = time.monotonic() + timeout
    while True:
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if line.startswith(prefix):
                _unread[proc.pid] = buffer
                return line
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # the child exited
        buffer += chunk.decode("utf-8", "replace")
    _unread[proc.pid] = buffer
    raise AssertionError(
        f"no line starting with {prefix!r} from the child within {timeout}s"
        f" (exit status {proc.poll()})"
    )


class Runtime:
    """A private runtime folder and the children started in it (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.env = {**os.environ, "TMPDIR": root, "HOME": root, "QT_QPA_PLATFORM": "offscreen"}
        for name in ("XDG_RUNTIME_DIR", "AURORAVIEW_IPC_CHANNEL", "AURORAVIEW_IPC_TOKEN"):
            self.env.pop(name, None)
        self.children: list[subprocess.Popen[str]] = []
        self.serving: set[int] = set()  # `serve` children: they stop on SIGTERM, not on EOF

    @classmethod
    @contextlib.contextmanager
    def open(cls, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
        # Short: socket paths must fit sockaddr_un.
        root = tempfile.mkdtemp(prefix="r", dir=os.environ["TMPDIR"])
        runtime = cls(root)
        monkeypatch.setenv("TMPDIR", root)
        monkeypatch.setenv("HOME", root)
        for name in ("XDG_RUNTIME_DIR", "AURORAVIEW_IPC_CHANNEL", "AURORAVIEW_IPC_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        try:
            yield runtime
            runtime.stop_all()
            list_hosts()  # drops what killed hosts left
            left = os.listdir(runtime.channel_dir) if os.path.isdir(runtime.channel_dir) else []
            assert not left, f"left in the runtime folder: {left}"
        finally:
            runtime.stop_all()
            shutil.rmtree(root, ignore_errors=True)

    @property
    def channel_dir(self) -> str:
        return runtime_dir(create=False)

    def spawn(self, argv: list[str], **options: Any) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **options,
        )
        self.children.append(proc)
        return proc

    def serve(self, *args: str) -> subprocess.Popen[str]:
        """``aurora-dcc serve`` as a child, once its record is listed."""
        proc = self.spawn([sys.executable, "-m", "aurora_dcc.cli", "serve", *args])
        self.serving.add(proc.pid)
        self.wait_for_host(proc.pid)
        return proc

    def host(self) -> subprocess.Popen[str]:
        """``tests/children/cli_host.py`` (``freeze``, ``boom``), once it serves."""
        proc = self.spawn([sys.executable, str(CHILDREN / "cli_host.py")])
        read_line(proc, "ready ")
        self.wait_for_host(proc.pid)
        return proc

    def wait_for_host(self, pid: int, timeout: float = 30.0) -> HostRecord:
        found: list[HostRecord] = []

        def listed() -> bool:
            found[:] = [r for r in list_hosts() if r.pid == pid]
            return bool(found)

        assert wait_until(listed, timeout=timeout), f"host {pid} never listed"
        return found[0]

    def cli(
        self, *args: str, input: Optional[str] = None, env: Optional[dict[str, str]] = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``aurora-dcc ARGS`` to the end (bounded)."""
        return subprocess.run(
            [sys.executable, "-m", "aurora_dcc.cli", *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cli_start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``aurora-dcc ARGS`` without waiting for it."""
        return self.spawn([sys.executable, "-m", "aurora_dcc.cli", *args])

    def stop_all(self) -> None:
        for proc in self.children:
            if proc.pid in self.serving and proc.poll() is None:
                proc.terminate()
            stop_child(proc)
            _unread.pop(proc.pid, None)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.children.clear()
