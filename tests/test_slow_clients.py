"""Clients that stop reading or never finish their handshake, on both servers.

A client that stops reading is dropped once it falls ``max_send_buffer`` bytes
behind, without stalling the broadcaster or the other clients, and without the
server's memory growing; a client trickling its ``hello`` is dropped at the
handshake deadline counted from accept; a Qt server whose loop was blocked
(or ran without reading its sockets) keeps a client that sent its ``hello`` on
time; a server whose connection handlers took its clients keeps none of them
once they left.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, Callable, Optional

import pytest
from qt_helpers import in_thread, unique_name
from support import CHILDREN, wait_until

from aurora_dcc.protocol.message import IpcMessage
from aurora_dcc.qt.local_socket import QtLocalSocketServer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and /proc"),
    pytest.mark.slow,
]

_BOUND = 256 * 1024
_PAD = "x" * 1000  # a 1 KB event
_HELLO = json.dumps({"type": "hello", "data": {"protocol": 1, "peer": "raw", "pid": 1}}).encode()


class RawPeer:
    """A raw socket client polled without blocking (so a Qt test can run its loop)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(address)
        self.sock.setblocking(False)
        self.received = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def poll(self) -> bytes:
        """Read what is there; notes the server's close."""
        while not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:  # reset by the server
                self.eof = True
                break
            if not chunk:
                self.eof = True
            self.received += chunk
        return self.received

    def got(self, kind: str) -> bool:
        return f'"type":"{kind}"'.encode() in self.poll().replace(b" ", b"")

    def closed_by_server(self) -> bool:
        """True once the server closed (what it sent before is read and dropped)."""
        self.poll()
        self.received = self.received[-4096:]
        return self.eof

    def close(self) -> None:
        self.sock.close()


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc")


def broadcast_in_bursts(
    emit: Callable[[int], None],
    delivered: Callable[[], int],
    wait: Callable[[Callable[[], bool]], bool],
    *,
    bursts: int,
    size: int,
) -> float:
    """Emit ``bursts`` bursts of ``size`` events, each followed by a wait until the
    reading client has them all; returns the longest burst (emit to delivery)."""
    worst = 0.0
    for burst in range(bursts):
        start = time.monotonic()
        for i in range(burst * size, (burst + 1) * size):
            emit(i)
        expected = (burst + 1) * size
        assert wait(lambda expected=expected: delivered() >= expected), (
            f"the reading client got {delivered()} of {expected} events"
        )
        worst = max(worst, time.monotonic() - start)
    return worst


# -- the pure-Python server ----------------------------------------------------


def test_a_client_that_stops_reading_is_dropped_and_stalls_no_broadcast(channel_name: str) -> None:
    # send_timeout 5 s: before the bound, the first broadcast the slow client's
    # socket could not take blocked every client for those 5 s.
    server = LocalSocketChannelServer(channel_name, max_send_buffer=_BOUND, send_timeout=5.0)
    slow: Optional[RawPeer] = None
    reader: Optional[LocalSocketChannel] = None
    try:
        threads = threading.active_count()
        slow = RawPeer(server.address)
        slow.send(_HELLO + b"\n")
        assert wait_until(lambda: slow is not None and slow.got("ready"))
        reader = LocalSocketChannel.connect(channel_name)
        got: list[int] = []
        reader.on_message(lambda msg: got.append(msg.data["i"]))
        assert wait_until(lambda: len(server.connections) == 2)
        rss = rss_bytes()

        worst = broadcast_in_bursts(
            lambda i: server.emit("tick", {"i": i, "pad": _PAD}),
            lambda: len(got),
            lambda done: wait_until(done, timeout=5.0),
            bursts=40,
            size=250,
        )
        assert worst < 2.0, f"a broadcast burst took {worst:.1f}s: the slow client stalled it"
        assert got == list(range(10_000))  # the reading client lost nothing
        assert wait_until(lambda: len(server.connections) == 1)  # the slow one is dropped
        assert wait_until(slow.closed_by_server)
        # 10 MB went out; the server held at most the bound for the slow client.
        assert rss_bytes() - rss < 8 * 1024 * 1024
        slow.close()
        # The reading client's threads (its own, the server's for it); no flusher left.
        assert wait_until(lambda: threading.active_count() <= threads + 2), [
            t.name for t in threading.enumerate()
        ]
    finally:
        if slow is not None:
            slow.close()
        if reader is not None:
            reader.close()
        server.close()


def test_a_reply_to_a_client_that_stops_reading_waits_instead_of_dropping_it(
    channel_name: str,
) -> None:
    # A direct send is paced by the peer (as on a client), not dropped at the bound.
    server = LocalSocketChannelServer(channel_name, max_send_buffer=_BOUND, send_timeout=5.0)
    try:
        client = LocalSocketChannel.connect(channel_name)
        conn = server.accept(timeout=5.0)
        sent = threading.Event()

        def flood() -> None:
            for i in range(4000):
                conn.send(IpcMessage.event_message("tick", {"i": i, "pad": _PAD}))
            sent.set()

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        assert not sent.wait(0.5)  # 4 MB: more than the bound and the OS take
        got = [client.receive(timeout=5.0).data["i"] for _ in range(4000)]
        assert got == list(range(4000))
        assert sent.wait(5.0)
        assert conn.is_connected
        client.close()
    finally:
        server.close()


def test_clients_trickling_hello_are_dropped_at_the_handshake_deadline(
    channel_name: str,
) -> None:
    # Each byte comes well within the timeout: only a deadline in total drops them.
    server = LocalSocketChannelServer(channel_name, handshake_timeout=1.0)
    peers: list[RawPeer] = []
    try:
        threads = threading.active_count()
        peers = [RawPeer(server.address) for _ in range(5)]
        start = time.monotonic()
        sent = 0
        while not all(peer.closed_by_server() for peer in peers):
            assert time.monotonic() - start < 4.0, "slow-loris clients still connected"
            for peer in peers:
                if not peer.eof:
                    with _ignore_gone():
                        peer.send(_HELLO[sent : sent + 1])
            sent += 1
            time.sleep(0.3)  # the trickle itself, not a wait for a condition
        assert time.monotonic() - start >= 0.9  # not before the deadline
        assert wait_until(lambda: threading.active_count() <= threads + 1)  # the acceptor
        assert wait_until(lambda: threading.active_count() <= threads)
        assert server.connections == []
    finally:
        for peer in peers:
            peer.close()
        server.close()


class _ignore_gone:
    """Ignore a send to a connection the server has just closed."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (BrokenPipeError, ConnectionResetError))


# -- the Qt server -------------------------------------------------------------


@pytest.fixture
def qt_server(qapp: Any) -> Any:
    servers: list[QtLocalSocketServer] = []

    def make(**options: Any) -> QtLocalSocketServer:
        server = QtLocalSocketServer(unique_name(), **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_qt_a_client_that_stops_reading_is_dropped_and_memory_stays_bounded(
    qt_server: Any, qtbot: Any
) -> None:
    server = qt_server(max_send_buffer=_BOUND)
    slow = RawPeer(server.address)
    reader: Optional[LocalSocketChannel] = None
    try:
        slow.send(_HELLO + b"\n")
        qtbot.waitUntil(lambda: slow.got("ready"), timeout=5000)
        got: list[int] = []
        reader = in_thread(qtbot, lambda: LocalSocketChannel.connect(server.name))
        assert reader is not None
        reader.on_message(lambda msg: got.append(msg.data["i"]))
        qtbot.waitUntil(lambda: len(server.connections) == 2, timeout=5000)
        rss = rss_bytes()

        def wait(done: Callable[[], bool]) -> bool:
            qtbot.waitUntil(done, timeout=5000)
            return True

        # 20 MB: before the bound Qt kept all of it for the slow client, and after.
        worst = broadcast_in_bursts(
            lambda i: server.emit("tick", {"i": i, "pad": _PAD}),
            lambda: len(got),
            wait,
            bursts=100,
            size=200,  # a burst under the bound: the reading client keeps up between them
        )
        assert got == list(range(20_000))
        assert worst < 2.0
        assert len(server.connections) == 1  # the slow one is dropped
        qtbot.waitUntil(slow.closed_by_server, timeout=5000)
        slow.close()
        assert rss_bytes() - rss < 10 * 1024 * 1024
    finally:
        slow.close()
        if reader is not None:
            reader.close()


def test_qt_broadcasts_from_another_thread_drop_a_client_that_stops_reading(
    qt_server: Any, qtbot: Any
) -> None:
    server = qt_server(max_send_buffer=_BOUND)
    slow = RawPeer(server.address)
    reader: Optional[LocalSocketChannel] = None
    try:
        slow.send(_HELLO + b"\n")
        qtbot.waitUntil(lambda: slow.got("ready"), timeout=5000)
        got: list[int] = []
        reader = in_thread(qtbot, lambda: LocalSocketChannel.connect(server.name))
        assert reader is not None
        reader.on_message(lambda msg: got.append(msg.data["i"]))
        qtbot.waitUntil(lambda: len(server.connections) == 2, timeout=5000)
        rss = rss_bytes()
        # The Qt loop runs (in_thread) while a worker broadcasts 20 MB.
        worst = in_thread(
            qtbot,
            lambda: broadcast_in_bursts(
                lambda i: server.emit("tick", {"i": i, "pad": _PAD}),
                lambda: len(got),
                lambda done: wait_until(done, timeout=5.0),
                bursts=100,
                size=200,
            ),
            timeout=60.0,
        )
        assert got == list(range(20_000))
        assert worst < 2.0
        qtbot.waitUntil(lambda: len(server.connections) == 1, timeout=5000)
        qtbot.waitUntil(slow.closed_by_server, timeout=5000)
        assert rss_bytes() - rss < 10 * 1024 * 1024
    finally:
        slow.close()
        if reader is not None:
            reader.close()


def test_qt_a_client_that_sent_hello_on_time_survives_a_busy_main_thread(
    qt_server: Any, qtbot: Any
) -> None:
    server = qt_server(handshake_timeout=1.0)
    client = RawPeer(server.address)
    try:
        client.send(b'{"type":"ping","id":"p1"}\n')  # answered before the session
        qtbot.waitUntil(lambda: client.got("pong"), timeout=5000)  # accepted: timer running
        client.send(_HELLO + b"\n")
        time.sleep(1.5)  # the Qt thread is busy (a handler) past the handshake timeout
        qtbot.waitUntil(lambda: client.got("ready") or client.eof, timeout=5000)
        assert client.got("ready")
        qtbot.waitUntil(lambda: len(server.connections) == 1, timeout=5000)
        qtbot.wait(1200)  # past a second timeout: the session stays open
        assert not client.closed_by_server()
        assert len(server.connections) == 1
    finally:
        client.close()


@pytest.mark.subprocess
@pytest.mark.parametrize("busy", ["handler", "exclude"])
def test_qt_a_hello_sent_on_time_survives_a_main_thread_busy_past_the_deadline(
    busy: str,
) -> None:
    # Qt's Unix dispatcher (QT_NO_GLIB=1; macOS and Windows dispatch alike) may fire
    # the overdue handshake timer before it reads the socket: the server used to drop
    # the client then (finding 5). With glib the socket happens to be read first.
    # "exclude": a progress loop that runs processEvents(ExcludeSocketNotifiers).
    env = {**os.environ, "QT_NO_GLIB": "1"}
    script = str(CHILDREN / "qt_busy_handshake.py")
    done = subprocess.run(
        [sys.executable, script, busy], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"ready": True, "closed": False}, done.stderr


def test_qt_clients_trickling_hello_are_dropped_at_the_handshake_deadline(
    qt_server: Any, qtbot: Any
) -> None:
    server = qt_server(handshake_timeout=1.0)
    peers = [RawPeer(server.address) for _ in range(3)]
    try:
        start = time.monotonic()
        sent = 0
        while not all(peer.closed_by_server() for peer in peers):
            assert time.monotonic() - start < 4.0, "slow-loris clients still connected"
            for peer in peers:
                if not peer.eof:
                    with _ignore_gone():
                        peer.send(_HELLO[sent : sent + 1])
            sent += 1
            qtbot.wait(300)  # the trickle itself; the loop runs meanwhile
        assert server.connections == []
    finally:
        for peer in peers:
            peer.close()


# -- both servers ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["python", "qt"])
def test_a_server_keeps_no_connection_its_handlers_took_once_the_client_left(
    kind: str, qapp: Any, qtbot: Any
) -> None:
    # A host serves through on_connection and never calls accept(): the accept queue
    # kept every connection ever made (the soak's RSS grew ~1 MiB a minute).
    name = unique_name()
    options = {"handshake_timeout": 1.0}  # its timer holds a connection until then
    server: Any = (
        LocalSocketChannelServer(name, **options)
        if kind == "python"
        else QtLocalSocketServer(name, **options)
    )
    taken: list[weakref.ref[Any]] = []
    server.on_connection(lambda conn: taken.append(weakref.ref(conn)))
    try:
        for _ in range(10):
            client = RawPeer(server.address)
            client.send(_HELLO + b"\n")
            qtbot.waitUntil(lambda client=client: client.got("ready"), timeout=5000)
            client.close()
        qtbot.waitUntil(lambda: len(taken) == 10 and not server.connections, timeout=5000)

        def all_freed() -> bool:
            gc.collect()
            return all(ref() is None for ref in taken)

        qtbot.waitUntil(all_freed, timeout=5000)  # Qt deletes its sockets on the loop
    finally:
        server.close()
