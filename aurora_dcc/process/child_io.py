"""A host's child process: its stderr passed through (tail kept), dying with its host.

Usage::

    child = ChildProcess(["python", "backend.py"], env=env, cwd=None, pipes=False)
    child.pid, child.returncode          # returncode: None while it runs
    child.final_stderr_tail()            # the last few KiB, for an error message
    child.end(grace=2.0)                 # terminate, then kill; the exit code
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import IO, Callable, Optional

__all__ = ["STDERR_TAIL_BYTES", "ChildProcess", "StderrTee", "kill_with_parent"]

STDERR_TAIL_BYTES = 8 * 1024
"""How much of a child's stderr is kept for error messages."""


class ChildProcess:
    """A started child process whose stderr passes through to ours, its tail kept.

    ``pipes=True`` gives it stdin/stdout pipes (a legacy backend talks over
    them); otherwise stdin is ``/dev/null`` and stdout is ours. With
    ``kill_with_host`` (Linux) the kernel terminates it when this process dies.
    Raises ``OSError`` when it cannot start.

    Usage: see the module docstring.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Optional[str],
        pipes: bool,
        kill_with_host: bool = True,
    ) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else None,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            preexec_fn=kill_with_parent() if kill_with_host else None,
        )
        assert self.popen.stderr is not None
        self._tee = StderrTee(self.popen.stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once it has exited, else ``None``."""
        return self.popen.poll()

    def stderr_tail(self) -> str:
        """The last few KiB it wrote to stderr so far."""
        return self._tee.tail()

    def final_stderr_tail(self) -> str:
        """``stderr_tail()`` once its stderr has ended (waiting up to a second for that)."""
        self._tee.join(1.0)
        return self._tee.tail()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Its exit code, waiting up to ``timeout`` seconds; ``None`` if it still runs."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def end(self, grace: float = 2.0) -> int:
        """Terminate it; kill it if it still runs ``grace`` seconds later. Its exit code."""
        self.popen.terminate()
        if self.wait(grace) is None:
            self.popen.kill()
        return self.popen.wait()


class StderrTee:
    """Forwards a child's stderr to ours as it comes, keeping the last ``limit`` bytes.

    Usage: see the module docstring.
    """

    def __init__(self, pipe: IO[bytes], limit: int = STDERR_TAIL_BYTES) -> None:
        self._pipe = pipe
        self._limit = limit
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="aurora-stderr-tee", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._pipe.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                _forward_to_stderr(chunk)
                with self._lock:
                    self._tail += chunk
                    del self._tail[: -self._limit]
        finally:
            self._pipe.close()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the child's stderr to end."""
        self._thread.join(timeout)

    def tail(self) -> str:
        """The last ``limit`` bytes the child wrote, decoded."""
        with self._lock:
            return self._tail.decode("utf-8", "replace")


def _forward_to_stderr(chunk: bytes) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(chunk)
            buffer.flush()
        else:
            stream.write(chunk.decode("utf-8", "replace"))
            stream.flush()
    except (OSError, ValueError):  # our stderr is closed or broken: keep the tail anyway
        pass


def kill_with_parent() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (else None).

    Only from the main thread: the kernel sends the signal when the *thread*
    that forked exits, and a worker thread may end long before the host.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec
