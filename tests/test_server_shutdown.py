"""A server that closes says ``bye``, answers what it accepted, refuses the rest, and never hangs.

Both servers (pure Python, Qt) with an ``RpcServer`` on top, against every
client kind (a raw socket following docs/PROTOCOL.md, the pure-Python channel
with a ``Peer``, the Qt channel with a ``Peer``): the client receives ``bye``;
a request the server accepted before it closed gets its real response; a
request sent after the ``bye`` gets -32002 (from the server for a raw client,
at once from a ``Peer``); ``close()`` returns at once and the connection
closes within the grace period even when a handler never returns. A Qt host
closed by a handler's nested loop (the main thread busy in that handler) still
sends that handler's answer.

Before protocol 1.1's ``bye`` the servers closed every connection at once:
no ``bye``, and the accepted request failed with -32002 instead of its answer.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

import pytest
from support import unique_channel_name, wait_until

from aurora_dcc.errors import ErrorCode
from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.qt.compat import QtCore
from aurora_dcc.qt.event_loop import LoopWaiter, no_op
from aurora_dcc.qt.local_socket import QtLocalSocketChannel, QtLocalSocketServer
from aurora_dcc.rpc.call_error import IpcCallError
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.rpc.server import RpcServer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="raw Unix sockets"),
    pytest.mark.slow,
]


def spin_until(done: Callable[[], object], timeout: float = 5.0) -> bool:
    """Run the Qt loop of this thread until ``done()`` (True) or ``timeout`` (False)."""
    deadline = time.monotonic() + timeout
    flags = QtCore.QEventLoop.ProcessEventsFlag.AllEvents
    while not done():
        if time.monotonic() >= deadline:
            return bool(done())
        QtCore.QCoreApplication.processEvents(flags, 10)
        time.sleep(0.001)
    return True


class Served:
    """A server of one kind with an ``RpcServer`` whose ``slow`` handler waits for ``release``.

    Handlers run on a pool (the Qt thread stays free for the test to drive).
    """

    def __init__(self, kind: str, pool: ThreadPoolExecutor, grace: Optional[float] = None) -> None:
        name = unique_channel_name("ashut")
        options = {} if grace is None else {"close_grace": grace}  # None: the default
        if kind == "python":
            self.server: Any = LocalSocketChannelServer(name, **options)
        else:
            self.server = QtLocalSocketServer(name, **options)
        self.rpc = RpcServer(self.server, executor=pool)
        self.started = threading.Event()
        self.release = threading.Event()
        self.fast_calls = 0

        def slow() -> str:
            self.started.set()
            self.release.wait(30.0)
            return "done"

        def fast() -> str:
            self.fast_calls += 1
            return "fast"

        self.rpc.register("slow", slow)
        self.rpc.register("fast", fast)

    def close(self) -> float:
        """Close; how long ``close()`` took."""
        start = time.monotonic()
        self.rpc.close()
        return time.monotonic() - start


class RawFrames:
    """A client written from PROTOCOL.md: a plain socket, polled without blocking."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(address)
        self.sock.setblocking(False)
        self.frames: list[dict[str, Any]] = []
        self.eof = False
        self._partial = b""

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(json.dumps(frame).encode() + b"\n")
        finally:
            self.sock.setblocking(False)

    def poll(self) -> list[dict[str, Any]]:
        while not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self.frames.extend(json.loads(line) for line in lines if line.strip())
        return self.frames

    def find(self, **fields: Any) -> Optional[dict[str, Any]]:
        for frame in self.poll():
            if all(frame.get(key) == value for key, value in fields.items()):
                return frame
        return None

    def close(self) -> None:
        self.sock.close()


class RawClient:
    """The raw client's side of the scenario."""

    def __init__(self, served: Served) -> None:
        self.raw = RawFrames(served.server.address)
        self.raw.send({"type": "hello", "data": {"protocol": 1, "peer": "raw"}})
        assert spin_until(lambda: self.raw.find(type="ready"))

    def call_slow(self) -> None:
        self.raw.send({"type": "request", "id": "slow", "method": "slow"})

    def got_bye(self) -> bool:
        return self.raw.find(type="bye") is not None

    def call_after_bye(self) -> int:
        """The error code the server answers a request sent after its ``bye`` with."""
        self.raw.send({"type": "request", "id": "late", "method": "fast"})
        assert spin_until(lambda: self.raw.find(type="response", id="late"))
        reply = self.raw.find(type="response", id="late")
        assert reply is not None and "error" in reply, reply
        code: int = reply["error"]["code"]
        return code

    def slow_result(self) -> Any:
        """The slow request's result; None if the connection closed without it."""
        spin_until(lambda: self.raw.find(type="response", id="slow") or self.raw.eof)
        reply = self.raw.find(type="response", id="slow")
        return None if reply is None else reply.get("data")

    def closed(self) -> bool:
        self.raw.poll()
        return self.raw.eof

    def close(self) -> None:
        self.raw.close()


class PeerClient:
    """A ``Peer`` over the pure-Python channel or the Qt channel."""

    def __init__(self, served: Served, channel_class: Any) -> None:
        self.channel = channel_class.connect(served.server.name)
        self.types: list[IpcMessageType] = []
        self.channel.on_message(lambda msg: self.types.append(msg.type))
        self.peer = Peer(self.channel)
        self.slow: Optional[Future[Any]] = None

    def call_slow(self) -> None:
        self.slow = self.peer.request_async("slow", timeout=30.0)

    def got_bye(self) -> bool:
        return IpcMessageType.BYE in self.types

    def call_after_bye(self) -> int:
        start = time.monotonic()
        with pytest.raises(IpcCallError) as failed:
            self.peer.request("fast", timeout=5.0)
        assert time.monotonic() - start < 1.0  # at once: nothing is sent to a closing server
        return failed.value.code

    def slow_result(self) -> Any:
        assert self.slow is not None
        spin_until(self.slow.done, timeout=10.0)
        try:
            return self.slow.result(timeout=0)
        except IpcCallError:
            return None

    def closed(self) -> bool:
        return self.channel.is_shutdown()

    def close(self) -> None:
        self.peer.close()
        self.channel.close()


def make_client(kind: str, served: Served) -> Any:
    if kind == "raw":
        return RawClient(served)
    if kind == "python":
        # Connect on a thread: a Qt server accepts on this thread's loop.
        return in_thread_spinning(lambda: PeerClient(served, LocalSocketChannel))
    return PeerClient(served, QtLocalSocketChannel)


def in_thread_spinning(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``fn()`` on another thread while this thread's Qt loop runs; its result."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert spin_until(lambda: not thread.is_alive(), timeout=timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4)
    yield executor
    executor.shutdown(wait=False)


SERVERS = ["python", "qt"]
CLIENTS = ["raw", "python", "qt"]


@pytest.mark.parametrize("client_kind", CLIENTS)
@pytest.mark.parametrize("server_kind", SERVERS)
def test_close_says_bye_answers_the_accepted_request_and_refuses_later_ones(
    qapp: Any, pool: ThreadPoolExecutor, server_kind: str, client_kind: str
) -> None:
    served = Served(server_kind, pool)
    client = make_client(client_kind, served)
    try:
        client.call_slow()
        assert spin_until(served.started.is_set)  # accepted: its handler runs
        assert served.close() < 1.0  # close() does not wait for the handler
        assert spin_until(client.got_bye), "no bye from the closing server"
        assert client.call_after_bye() == ErrorCode.SHUTTING_DOWN
        assert served.fast_calls == 0  # refused, never run
        assert not client.closed()  # open while the accepted request runs
        served.release.set()
        assert client.slow_result() == "done"  # its real answer, not -32002
        assert spin_until(client.closed)  # then the server closes
    finally:
        served.release.set()
        client.close()
        served.close()


@pytest.mark.parametrize("client_kind", CLIENTS)
@pytest.mark.parametrize("server_kind", SERVERS)
def test_close_never_waits_past_the_grace_period_for_a_handler_that_never_returns(
    qapp: Any, pool: ThreadPoolExecutor, server_kind: str, client_kind: str
) -> None:
    served = Served(server_kind, pool, grace=2.0)
    client = make_client(client_kind, served)
    try:
        client.call_slow()
        assert spin_until(served.started.is_set)
        start = time.monotonic()
        assert served.close() < 1.0  # nor for the grace period
        assert spin_until(client.got_bye), "no bye from the closing server"
        assert spin_until(client.closed, timeout=8.0)
        closed_after = time.monotonic() - start
        assert 1.8 < closed_after < 5.0, f"closed {closed_after:.2f}s after close()"
        assert client.slow_result() is None  # never answered: the close fails it
    finally:
        served.release.set()
        client.close()
        served.close()


def test_a_qt_host_closed_while_its_main_thread_runs_a_handler_still_answers_it(
    qapp: Any,
) -> None:
    # The QtHost case: handlers run on the main thread, and close() runs there too,
    # here from the handler's own nested loop. Waiting in close() would wait for a
    # handler below it on the stack; the host closes the connection once it answered.
    from aurora_dcc.hosts.qt_host import QtHost

    host = QtHost(unique_channel_name("ashut"), export_env=False)
    release = threading.Event()
    close_took: list[float] = []

    def close_now() -> None:
        start = time.monotonic()
        host.close()
        close_took.append(time.monotonic() - start)

    @host.handler("slow")
    def slow() -> str:
        QtCore.QTimer.singleShot(0, close_now)  # runs in the wait below
        LoopWaiter().wait(release.is_set, 10.0, no_op)  # the main thread stays busy here
        return "done"

    def client() -> tuple[Any, bool, int]:
        channel = LocalSocketChannel.connect(host.name)
        types: list[IpcMessageType] = []
        channel.on_message(lambda msg: types.append(msg.type))
        peer = Peer(channel)
        future = peer.request_async("slow", timeout=20.0)
        wait_until(lambda: IpcMessageType.BYE in types, timeout=5.0)
        try:
            peer.request("slow", timeout=5.0)
            refused = 0
        except IpcCallError as exc:
            refused = exc.code
        release.set()
        result = future.result(timeout=10.0)
        closed = wait_until(channel.is_shutdown, timeout=5.0)
        channel.close()
        return result, IpcMessageType.BYE in types and closed, refused

    try:
        result, bye_then_closed, refused = in_thread_spinning(client, timeout=20.0)
        assert result == "done"
        assert bye_then_closed
        assert refused == ErrorCode.SHUTTING_DOWN
        assert close_took and close_took[0] < 1.0  # the grace period is 5 s
    finally:
        release.set()
        host.close()


def test_a_request_read_after_bye_is_answered_by_the_session_itself(qapp: Any) -> None:
    # A plain server connection (no RpcServer): the session answers -32002 itself.
    server = LocalSocketChannelServer(unique_channel_name("ashut"))
    seen: list[IpcMessage] = []
    server.on_connection(lambda conn: conn.on_message(seen.append))
    raw = RawFrames(server.address)
    try:
        raw.send({"type": "hello", "data": {"protocol": 1}})
        assert spin_until(lambda: raw.find(type="ready"))
        conn = server.connections[0]
        conn.say_bye()
        assert spin_until(lambda: raw.find(type="bye"))
        raw.send({"type": "request", "id": "r1", "method": "anything"})
        assert spin_until(lambda: raw.find(type="response", id="r1"))
        reply = raw.find(type="response", id="r1")
        assert reply is not None and reply["error"]["code"] == ErrorCode.SHUTTING_DOWN
        assert seen == []  # never delivered to the application
    finally:
        raw.close()
        server.close()
