"""Channel names: who owns one, where its socket lives, who may serve it, what is valid.

Protocol 1.1 (docs/PROTOCOL.md, "Naming and ownership"): a server holds a lock on
``<socket>.lock`` while it runs, so a live server -- even one too busy to accept --
is never displaced, and of two servers racing for a name exactly one wins;
relative names live in a private 0700 directory; a client checks the server's
uid before it sends anything; names are validated the same way on both sides.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from aurora_dcc.cli import main as cli_main
from aurora_dcc.errors import ChannelTimeout
from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.transport.address import (
    MAX_UNIX_PATH,
    AddressInUse,
    InvalidChannelName,
    UntrustedServer,
    claim_address,
    resolve_address,
)
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

pytestmark = pytest.mark.skipif(os.name == "nt", reason="Unix sockets and flock: Unix only")

CHILD = Path(__file__).parent / "children" / "naming_server.py"
KINDS = ["qt", "python"]
PAIRINGS = [(first, second) for first in KINDS for second in KINDS]
ROUNDS = 8
WAIT = 10.0


class _Commands:
    """A ``naming_server.py`` child: one command line in, one answer line out."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        if not self._selector.select(timeout):
            raise AssertionError(f"child {self.proc.args} did not answer in {timeout} s")
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self._selector.close()
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _make_server(kind: str, name: str) -> Any:
    return QtLocalSocketServer(name) if kind == "qt" else LocalSocketChannelServer(name)


def _connect(kind: str, name: str, timeout: float, token: str | None = None) -> Any:
    channel_class = QtLocalSocketChannel if kind == "qt" else LocalSocketChannel
    return channel_class.connect(name, token=token, timeout=timeout)


def _serve_once(kind: str, name: str) -> None:
    """Start a server on ``name``, connect to its socket, close it: no file stays."""
    server = _make_server(kind, name)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(server.address)
        probe.close()
    finally:
        server.close()
    assert not os.path.exists(server.address)
    assert not os.path.exists(server.address + ".lock")


def _fill_backlog(path: str) -> list[socket.socket]:
    """Queue connections at ``path`` until its listen backlog is full (EAGAIN)."""
    queued: list[socket.socket] = []
    for _ in range(10_000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            return queued
        queued.append(sock)
    raise AssertionError("the backlog never filled")


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A fresh directory directly in /tmp (short, so socket paths stay short)."""
    path = tempfile.mkdtemp(prefix="an-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- claiming a name -----------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.parametrize(("first", "second"), PAIRINGS)
def test_two_servers_racing_for_a_name_exactly_one_wins(
    first: str, second: str, channel_name: str
) -> None:
    a, b = _Commands(first), _Commands(second)
    try:
        for i in range(ROUNDS):
            name = f"{channel_name}_{i}"
            a.send(f"start {name}")
            b.send(f"start {name}")
            answers = sorted([a.line(), b.line()])
            assert answers == [f"lost {name} AddressInUse", f"won {name}"], answers
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.connect(resolve_address(name))  # the winner's socket is in place
            probe.close()
            for child in (a, b):
                child.send(f"stop {name}")
                assert child.line() == f"stopped {name}"
            path = resolve_address(name)
            assert not os.path.exists(path) and not os.path.exists(path + ".lock")
    finally:
        a.close()
        b.close()


@pytest.mark.subprocess
@pytest.mark.parametrize(("first", "second"), PAIRINGS)
def test_a_busy_host_with_a_full_backlog_keeps_its_name(
    first: str, second: str, channel_name: str, qapp: Any
) -> None:
    host = _Commands(first, "serve", channel_name)
    try:
        assert host.line() == "listening"
        path = resolve_address(channel_name)
        inode = os.lstat(path).st_ino
        os.kill(host.proc.pid, signal.SIGSTOP)  # busy: nothing in it runs, nobody accepts
        queued: list[socket.socket] = []
        try:
            queued = _fill_backlog(path)
            with pytest.raises(AddressInUse, match="live server"):
                _make_server(second, channel_name)
            assert os.lstat(path).st_ino == inode
        finally:
            os.kill(host.proc.pid, signal.SIGCONT)
            _close_all(queued)
        with LocalSocketChannel.connect(channel_name, timeout=WAIT) as client:
            assert client.is_connected  # the host is still reachable at its name
    finally:
        host.close()


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_servers_socket_is_taken_over(kind: str, channel_name: str, qapp: Any) -> None:
    host = _Commands("python", "serve", channel_name)
    try:
        assert host.line() == "listening"
        host.proc.kill()  # SIGKILL: it cannot remove its files; its lock ends with it
        host.proc.wait(WAIT)
    finally:
        host.close()
    path = resolve_address(channel_name)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    _serve_once(kind, channel_name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_held_claim_is_a_live_server_even_before_its_socket_exists(
    kind: str, channel_name: str, qapp: Any
) -> None:
    claim = claim_address(channel_name)  # a server between its claim and its bind
    try:
        with pytest.raises(AddressInUse, match="live server"):
            _make_server(kind, channel_name)
    finally:
        claim.release()
    _make_server(kind, channel_name).close()  # once released, the name is free


@pytest.mark.parametrize("kind", KINDS)
def test_close_removes_only_the_socket_file_the_server_created(
    kind: str, channel_name: str, qapp: Any
) -> None:
    server = _make_server(kind, channel_name)
    path = server.address
    os.unlink(path)  # someone removed our file ...
    newer = socket.socket(socket.AF_UNIX)
    newer.bind(path)  # ... and something else now has the path
    try:
        server.close()
        assert os.path.exists(path)
    finally:
        newer.close()
        os.unlink(path)
    assert not os.path.exists(path + ".lock")


# -- the private directory and the server's uid ----------------------------------


def test_relative_names_live_in_a_private_directory(
    monkeypatch: pytest.MonkeyPatch, short_dir: str
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_dir)
    path = resolve_address("chan")
    directory = os.path.join(short_dir, "aurora_dcc")
    assert os.path.dirname(path) == directory
    st = os.lstat(directory)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    with LocalSocketChannelServer("chan") as server:
        assert server.address == path
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    os.chmod(directory, 0o755)  # others may enter: they could swap sockets in it
    with pytest.raises(UntrustedServer, match="0700"):
        LocalSocketChannelServer("chan")
    with pytest.raises(UntrustedServer, match="0700"):
        LocalSocketChannel.connect("chan", timeout=1.0)
    assert resolve_address(os.path.join(short_dir, "abs")) == os.path.join(short_dir, "abs")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to chown")
def test_a_channel_directory_owned_by_another_user_is_refused(
    monkeypatch: pytest.MonkeyPatch, short_dir: str
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_dir)
    directory = os.path.join(short_dir, "aurora_dcc")
    os.mkdir(directory, 0o700)
    os.chown(directory, 65534, 65534)  # a squatter made it first
    with pytest.raises(UntrustedServer, match="owned by uid 0"):
        LocalSocketChannel.connect("chan", timeout=1.0)


def _squatter(path: str) -> tuple[int, int]:
    """Fork a child that runs as ``nobody``, listens at ``path`` and reports (on the
    returned pipe) ``L`` once listening, then how many bytes a client sent it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(4)
            os.write(write_end, b"L")
            server.settimeout(WAIT)
            conn, _ = server.accept()
            conn.settimeout(2.0)
            received = 0
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received += len(chunk)
            except OSError:
                pass
            os.write(write_end, str(received).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


@pytest.mark.subprocess
@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0,
    reason="needs root to run the squatter as another user (nobody)",
)
@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="SO_PEERCRED: Linux only")
@pytest.mark.parametrize("kind", KINDS)
def test_a_squatter_owned_by_another_user_gets_nothing(
    kind: str, short_dir: str, qapp: Any
) -> None:
    os.chmod(short_dir, 0o777)  # a directory the squatter can write
    path = os.path.join(short_dir, "squat")
    pid, report = _squatter(path)
    try:
        assert os.read(report, 1) == b"L"
        with pytest.raises(UntrustedServer, match="uid 65534"):
            _connect(kind, path, timeout=2.0, token="s3cret")
        assert os.read(report, 32) == b"0"  # not a byte: no hello, no token
    finally:
        os.close(report)
        os.waitpid(pid, 0)


# -- names, the CLI, a full backlog ---------------------------------------------

BAD_NAMES = ["", "..", "a/b", "sp ace", "nul\0x", "/tmp/../etc/x", "n" * 300, "ünï"]


def _entry_points() -> list[Callable[[str], Any]]:
    return [
        LocalSocketChannelServer,
        QtLocalSocketServer,
        lambda name: LocalSocketChannel.connect(name, timeout=0.2),
        lambda name: QtLocalSocketChannel.connect(name, timeout=0.2),
    ]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_bad_name_is_refused_the_same_way_on_every_side(name: str, qapp: Any) -> None:
    for entry in _entry_points():
        with pytest.raises(InvalidChannelName):
            entry(name)
    with pytest.raises(ValueError):  # still a ValueError, as before
        resolve_address(name)


def test_the_longest_socket_path_works_on_both_sides(short_dir: str, qapp: Any) -> None:
    path = os.path.join(short_dir, "x" * (MAX_UNIX_PATH - 2 - len(short_dir)))
    assert len(os.fsencode(path)) == MAX_UNIX_PATH - 1
    for kind in KINDS:
        _serve_once(kind, path)
    for entry in _entry_points():
        with pytest.raises(InvalidChannelName, match="longer"):
            entry(path + "x")


@pytest.mark.parametrize("which", ["bad name", "nobody serves it"])
def test_the_cli_prints_one_line_when_it_cannot_connect(
    which: str, channel_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "n" * 300 if which == "bad name" else channel_name
    expected = 2 if which == "bad name" else 3  # usage; cannot connect (docs/cli.md)
    assert cli_main(["--channel", name, "--timeout", "0.5", "ping"]) == expected
    err = capsys.readouterr().err
    assert err.startswith("aurora-dcc: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.fixture
def full_backlog(channel_name: str) -> Iterator[socket.socket]:
    """A listening socket at ``channel_name`` that accepts nobody, its backlog full."""
    path = resolve_address(channel_name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    queued = _fill_backlog(path)
    try:
        yield listener
    finally:
        _close_all(queued)
        listener.close()
        os.unlink(path)


@pytest.mark.parametrize("kind", KINDS)
def test_connect_to_a_full_backlog_is_retried_then_times_out(
    kind: str, channel_name: str, full_backlog: socket.socket, qapp: Any
) -> None:
    started = time.monotonic()
    with pytest.raises(ChannelTimeout):
        _connect(kind, channel_name, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 5.0


def _serve_after(listener: socket.socket, delay: float, stop: threading.Event) -> None:
    """Accept nobody for ``delay`` s, then everyone; answer each ``hello`` with ``ready``."""
    time.sleep(delay)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    conns: list[socket.socket] = []
    try:
        while not stop.is_set():
            for key, _ in selector.select(0.05):
                if key.fileobj is listener:
                    conn, _addr = listener.accept()
                    conns.append(conn)
                    selector.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                data = conn.recv(65536)
                if not data:
                    selector.unregister(conn)
                elif b'"hello"' in data:
                    conn.sendall(b'{"type":"ready","data":{"protocol":1,"handlers":[]}}\n')
    finally:
        selector.close()
        _close_all(conns)


@pytest.mark.parametrize("kind", KINDS)
def test_connect_to_a_full_backlog_gets_through_once_the_server_accepts(
    kind: str, channel_name: str, full_backlog: socket.socket, qapp: Any
) -> None:
    stop = threading.Event()
    server = threading.Thread(target=_serve_after, args=(full_backlog, 0.3, stop))
    server.start()
    try:
        with _connect(kind, channel_name, timeout=WAIT) as client:
            assert client.is_connected
    finally:
        stop.set()
        server.join(WAIT)
