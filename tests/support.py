"""Plain helpers the tests share; ``conftest.py`` wraps them as fixtures.

Import them where a fixture does not fit (a helper module, a child setup)::

    from support import CHILDREN, unique_channel_name, wait_until

    name = unique_channel_name()
    assert wait_until(lambda: server.connections, timeout=5.0)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

__all__ = [
    "CHILDREN",
    "FAKES",
    "ChildProcesses",
    "SocketPair",
    "ThreadRunner",
    "open_socket_pair",
    "stop_child",
    "unique_channel_name",
    "wait_until",
]

CHILDREN = Path(__file__).parent / "children"
"""The scripts tests run as child processes (``tests/children``)."""

FAKES = str(Path(__file__).parent / "fake_dcc")
"""The fake DCC APIs (``maya``, ``hou``, ``nuke``, ``pymxs``): see the ``fakes`` fixture."""


def unique_channel_name(prefix: str = "aurora_t") -> str:
    """A channel name no other test (or test run) uses: ``<prefix>_<pid>_<random>``.

    Short on purpose: the socket path must fit ``sockaddr_un`` under any ``$TMPDIR``.
    """
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds passed (False).

    For plain threads only: it does not run a Qt loop (use ``qtbot.waitUntil`` there).

    Usage::

        assert wait_until(lambda: len(received) == 3, timeout=5.0)
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(delay)
        delay = min(delay * 2, 0.02)  # quick for fast conditions, cheap for slow ones
    return True


class ThreadRunner:
    """Runs callables on daemon threads; every wait is bounded, so a test never hangs.

    ``runner(fn, *args, timeout=10.0)`` runs ``fn`` on a thread and returns its
    result or raises its exception; if it has not finished within ``timeout``
    the test fails (the thread is left behind as a daemon). ``runner.start(fn)``
    returns a ``Future`` at once, for a call that must block while the test
    does something else. ``unfinished(timeout)`` lists what is still running.

    Usage::

        assert run_in_thread(client.receive, 5.0).data == {"i": 1}
        pending = run_in_thread.start(channel.receive)   # blocks on its thread
        channel.close()
        with pytest.raises(ShuttingDown):
            pending.result(timeout=5.0)
    """

    def __init__(self) -> None:
        self._threads: list[tuple[threading.Thread, Callable[..., Any]]] = []

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        thread = threading.Thread(target=run, name=f"test-{_name_of(fn)}", daemon=True)
        self._threads.append((thread, fn))
        thread.start()
        return future

    def __call__(
        self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any
    ) -> Any:
        future = self.start(fn, *args, **kwargs)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise AssertionError(f"{_name_of(fn)} did not finish within {timeout}s") from None

    def unfinished(self, timeout: float) -> list[str]:
        """Join every thread started here (``timeout`` in all); name those still running."""
        deadline = time.monotonic() + timeout
        for thread, _fn in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [_name_of(fn) for thread, fn in self._threads if thread.is_alive()]


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class SocketPair(NamedTuple):
    """A pure-Python server, a connected client, and the server's end of that connection."""

    server: LocalSocketChannelServer
    client: LocalSocketChannel
    conn: LocalSocketChannel


def open_socket_pair(
    name: str,
    *,
    token: Optional[str] = None,
    timeout: float = 5.0,
    server: Optional[dict[str, Any]] = None,
    client: Optional[dict[str, Any]] = None,
) -> SocketPair:
    """Start a ``LocalSocketChannelServer`` on ``name`` (keywords: ``server``), connect
    a client (keywords: ``client``) with ``token``, and accept it.

    The caller closes all three (the ``socket_pair`` fixtures do).
    """
    listening = LocalSocketChannelServer(name, token=token, **(server or {}))
    try:
        connected = LocalSocketChannel.connect(name, token=token, timeout=timeout, **(client or {}))
        try:
            conn = listening.accept(timeout=timeout)
        except BaseException:
            connected.close()
            raise
    except BaseException:
        listening.close()
        raise
    assert isinstance(conn, LocalSocketChannel)
    return SocketPair(listening, connected, conn)


def stop_child(proc: subprocess.Popen[Any], timeout: float = 5.0) -> Optional[int]:
    """End a child politely, then firmly: close its stdin (the children in
    ``tests/children`` exit on EOF and clean up), wait, terminate, kill.

    Returns its exit code (``None`` if it survived even SIGKILL for ``timeout``).
    """
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(OSError):  # the child is gone already: a broken pipe
            proc.stdin.close()
    for stop in (None, proc.terminate, proc.kill):
        if stop is not None and proc.poll() is None:
            stop()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


class ChildProcesses:
    """Starts scripts from ``tests/children`` and stops every one of them at the end.

    Each child gets a pipe as stdin: closing it (``stop``) asks the child to
    clean up and exit; a child that does not is terminated, then killed.

    Usage::

        proc = children.spawn("ls_server.py", channel_name)
        ...
        assert children.stop(proc) == 0
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, script: str, *args: str, **popen_options: Any) -> subprocess.Popen[Any]:
        popen_options.setdefault("stdin", subprocess.PIPE)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            [sys.executable, str(CHILDREN / script), *args], **popen_options
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> Optional[int]:
        return stop_child(proc, timeout)

    def stop_all(self) -> None:
        for proc in self._procs:
            stop_child(proc)
