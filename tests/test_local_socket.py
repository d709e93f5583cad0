"""LocalSocketChannelServer / LocalSocketChannel: real Unix sockets in one process."""

from __future__ import annotations

import os
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from typing import Callable

import pytest
from support import ChildProcesses, SocketPair, ThreadRunner

from aurora_dcc import (
    ChannelTimeout,
    Disconnected,
    IpcMessage,
    IpcMessageType,
    ShuttingDown,
)
from aurora_dcc.errors import MessageTooLarge, Unauthorized
from aurora_dcc.transport import socket_channel
from aurora_dcc.transport.address import AddressInUse, resolve_address
from aurora_dcc.transport.local_socket import (
    LocalSocketChannel,
    LocalSocketChannelServer,
    RetryPolicy,
)
from aurora_dcc.transport.read_turn import ReadState, ReadTurn
from aurora_dcc.transport.socket_channel import READ_SPIN
from aurora_dcc.transport.socket_io import RECV_CHUNK

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix domain sockets")

WAIT = 5.0


@pytest.fixture
def name(channel_name: str) -> str:
    return channel_name  # conftest's unique name, under this file's short fixture name


@pytest.fixture
def server(name: str) -> Iterator[LocalSocketChannelServer]:
    srv = LocalSocketChannelServer(name, token="s3cret", handler_names=["scene.info"])
    try:
        yield srv
    finally:
        srv.close()


def connect_pair(
    server: LocalSocketChannelServer, **options: object
) -> tuple[LocalSocketChannel, LocalSocketChannel]:
    client = LocalSocketChannel.connect(server.name, token="s3cret", **options)  # type: ignore[arg-type]
    conn = server.accept(timeout=WAIT)
    assert isinstance(conn, LocalSocketChannel)
    return client, conn


class Collector:
    """A handler that records each message's ``data["i"]`` and thread; ``done`` is
    set once ``count`` messages arrived."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.got: list[int] = []
        self.threads: set[str] = set()
        self.done = threading.Event()

    def __call__(self, msg: IpcMessage) -> None:
        self.got.append(msg.data["i"])
        self.threads.add(threading.current_thread().name)
        if len(self.got) == self.count:
            self.done.set()


def test_messages_flow_both_ways_and_the_handshake_is_recorded(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        assert client.peer_info["handlers"] == ["scene.info"]
        assert conn.peer_info["pid"] == os.getpid()
        client.emit("scene.opened", {"path": "shot.ma"})
        request = IpcMessage.request("scene.info", {"verbose": True})
        client.send(request)
        first, second = conn.receive(WAIT), conn.receive(WAIT)
        assert (first.event, first.data) == ("scene.opened", {"path": "shot.ma"})
        assert second == request
        conn.send(IpcMessage.response(request.id, {"nodes": 3}))
        reply = client.receive(WAIT)  # the handshake's ready is not delivered
        assert reply.type is IpcMessageType.RESPONSE
        assert (reply.id, reply.data) == (request.id, {"nodes": 3})
        assert client.try_receive() is None


def test_server_emit_reaches_every_client_and_a_connection_emit_only_its_own(
    server: LocalSocketChannelServer,
) -> None:
    (a, conn_a), (b, _conn_b) = connect_pair(server), connect_pair(server)
    with a, b:
        assert len(server.connections) == 2
        server.emit("selection.changed", {"nodes": ["pCube1"]})
        conn_a.emit("only.a")
        assert a.receive(WAIT).event == "selection.changed"
        assert b.receive(WAIT).event == "selection.changed"
        assert a.receive(WAIT).event == "only.a"
        with pytest.raises(ChannelTimeout):
            b.receive(timeout=0.2)
        assert server.metrics.messages_sent == 2


def test_a_dead_client_is_dropped_from_broadcasts(server: LocalSocketChannelServer) -> None:
    (a, conn_a), (b, _) = connect_pair(server), connect_pair(server)
    with b:
        a.close()
        with pytest.raises(Disconnected):
            conn_a.receive(WAIT)
        server.emit("still.here")
        assert b.receive(WAIT).event == "still.here"
        assert server.connections == [_]


def test_handler_lists_are_announced_both_ways(server: LocalSocketChannelServer) -> None:
    client, conn = connect_pair(server)
    with client:
        server.set_handler_names(["scene.info", "scene.save"])
        ready = client.receive(WAIT)
        assert ready.type is IpcMessageType.READY
        assert ready.data["handlers"] == ["scene.info", "scene.save"]
        assert client.peer_info["handlers"] == ["scene.info", "scene.save"]
        client.announce(["tool.run"])
        assert conn.receive(WAIT).type is IpcMessageType.READY
        assert conn.peer_info["handlers"] == ["tool.run"]
        late = LocalSocketChannel.connect(server.name, token="s3cret")
        with late:
            assert late.peer_info["handlers"] == ["scene.info", "scene.save"]


def test_close_wakes_a_blocked_receive_on_both_ends(
    server: LocalSocketChannelServer, run_in_thread: ThreadRunner
) -> None:
    client, conn = connect_pair(server)
    waiters = [run_in_thread.start(channel.receive, timeout=30.0) for channel in (client, conn)]
    client.close()
    assert [type(waiter.exception(WAIT)) for waiter in waiters] == [Disconnected, Disconnected]
    with pytest.raises(ShuttingDown):
        client.emit("after.close")
    with pytest.raises(Disconnected):
        conn.emit("peer.gone")
    assert client.is_shutdown() and conn.is_shutdown()
    assert not conn.is_connected
    with pytest.raises(Disconnected):  # closed and empty: polling learns it too
        conn.try_receive()


def test_handlers_run_on_the_reader_thread_and_get_earlier_messages_first(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        for i in range(3):
            client.emit("early", {"i": i})
        client.send(IpcMessage.ping("p1"))
        assert client.receive(WAIT).type is IpcMessageType.PONG  # the early ones have arrived
        handle = Collector(6)
        conn.on_message(handle)
        for i in range(3, 6):
            client.emit("late", {"i": i})
        assert handle.done.wait(WAIT)
        assert handle.got == list(range(6))
        assert any(name.startswith("aurora-read-") for name in handle.threads)


def test_a_handler_may_subscribe_and_unsubscribe_handlers(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        seen: list[str] = []
        done = threading.Event()

        def second(msg: IpcMessage) -> None:
            seen.append(f"second:{msg.event}")
            if msg.event == "two":
                done.set()

        def first(msg: IpcMessage) -> None:
            seen.append(f"first:{msg.event}")
            unsubscribe_first()
            conn.on_message(second)  # on the reader thread, inside a delivery

        unsubscribe_first = conn.on_message(first)
        client.emit("one")
        client.emit("two")
        assert done.wait(WAIT)
        assert seen[0] == "first:one"
        assert seen[-1] == "second:two"
        assert "first:two" not in seen


def test_wrong_token_is_refused_and_a_right_one_accepted(
    server: LocalSocketChannelServer,
) -> None:
    with pytest.raises(Unauthorized):
        LocalSocketChannel.connect(server.name, token="wrong", timeout=WAIT)
    with pytest.raises(Unauthorized):
        LocalSocketChannel.connect(server.name, timeout=WAIT)
    with pytest.raises(ChannelTimeout):
        server.accept(timeout=0.1)
    assert server.metrics.errors == 2
    client, _ = connect_pair(server)
    client.close()


def test_the_socket_file_is_user_only_and_removed_on_close(name: str) -> None:
    server = LocalSocketChannelServer(name)
    mode = os.stat(server.address).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    server.close()
    server.close()  # idempotent
    assert not os.path.exists(server.address)
    with pytest.raises(ShuttingDown):
        server.accept(timeout=0.1)


def test_a_second_server_on_a_live_name_fails_naming_the_first(
    server: LocalSocketChannelServer,
) -> None:
    with pytest.raises(AddressInUse, match=server.name):
        LocalSocketChannelServer(server.name)
    client, _ = connect_pair(server)  # the first server is untouched
    client.close()


def test_a_stale_socket_file_is_replaced_and_close_leaves_a_newer_server_alone(
    name: str,
) -> None:
    path = resolve_address(name)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # a dead server's file: nobody listens, nobody holds the name's lock
    first = LocalSocketChannelServer(name)
    os.unlink(path)  # someone removed the first server's file ...
    newer = socket.socket(socket.AF_UNIX)
    newer.bind(path)  # ... and another (lock-less) server took the path
    first.close()  # must not remove the newer socket file
    assert os.path.exists(path)
    newer.close()
    os.unlink(path)
    with LocalSocketChannelServer(name) as second, LocalSocketChannel.connect(name, timeout=WAIT):
        assert second.accept(timeout=WAIT).is_connected  # type: ignore[attr-defined]
    assert not os.path.exists(path)


def test_connect_retries_until_the_server_starts(name: str) -> None:
    servers: list[LocalSocketChannelServer] = []
    starter = threading.Timer(0.3, lambda: servers.append(LocalSocketChannelServer(name)))
    starter.start()
    try:
        policy = RetryPolicy(attempts=40, initial_delay=0.02, max_delay=0.1)
        with LocalSocketChannel.connect(name, retry=policy) as client:
            assert client.is_connected
    finally:
        starter.join()
        for srv in servers:
            srv.close()
    with pytest.raises(Disconnected, match="no server"):
        LocalSocketChannel.connect(name, retry=2)  # two attempts, default back-off


def test_concurrent_senders_never_interleave_frames(
    socket_pair_factory: Callable[..., SocketPair], run_in_thread: ThreadRunner
) -> None:
    _, client, conn = socket_pair_factory(server={"capacity": 50})
    senders, per_sender = 4, 300
    payload = "x" * 3000  # several frames per socket write, frames split across reads

    def send_all(k: int) -> None:
        for i in range(per_sender):
            client.emit("tick", {"k": k, "i": i, "pad": payload})

    sending = [run_in_thread.start(send_all, k) for k in range(senders)]
    last = dict.fromkeys(range(senders), -1)
    for _ in range(senders * per_sender):  # the small inbox slows the senders down
        data = conn.receive(WAIT).data
        assert data["i"] == last[data["k"]] + 1 and data["pad"] == payload
        last[data["k"]] = data["i"]
    for done in sending:
        done.result(WAIT)
    # capacity, plus at most the frames of one read
    assert conn.metrics.peak_queue_length <= 50 + RECV_CHUNK // len(payload)
    assert client.metrics.messages_sent == senders * per_sender + 1  # + hello
    assert conn.metrics.messages_received == senders * per_sender + 1
    assert conn.metrics.bytes_received == client.metrics.bytes_sent
    assert conn.metrics.messages_sent == 1  # ready


def test_send_many_writes_a_batch_and_too_large_messages_stay_local(
    socket_pair_factory: Callable[..., SocketPair],
) -> None:
    _, client, conn = socket_pair_factory(server={"max_frame": 1024}, client={"max_frame": 1024})
    with pytest.raises(MessageTooLarge):
        client.emit("big", "x" * 2000)
    client.send_many([IpcMessage(IpcMessageType.EVENT, {"i": i}, event="e") for i in range(5)])
    assert [conn.receive(WAIT).data["i"] for _ in range(5)] == list(range(5))
    assert client.metrics.messages_sent == 6  # hello + 5


def test_a_client_that_never_says_hello_is_dropped(name: str) -> None:
    import socket

    with LocalSocketChannelServer(name, token="t", handshake_timeout=0.2) as server:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        sock.connect(server.address)
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
        assert server.connections == []


# -- a client without handlers reads on the receiving thread -----------------


def reader_threads(channel: LocalSocketChannel) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"aurora-read-{channel.name}"]


def test_a_client_without_handlers_reads_on_the_receiving_thread(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        assert reader_threads(client) == []
        conn.emit("one")
        conn.emit("two")
        conn.send(IpcMessage.ping("p"))  # answered when the client reads
        assert client.receive(WAIT).event == "one"
        assert client.receive(WAIT).event == "two"  # queued by the first read, or read now
        assert conn.receive(WAIT).type is IpcMessageType.PONG
        assert client.try_receive() is None
        conn.emit("three")
        # Wait until it has arrived (not read: no reader thread), then poll for it.
        assert select.select([client._stream], [], [], WAIT)[0]  # type: ignore[type-var]
        got = client.try_receive()  # reads what has arrived, without blocking
        assert got is not None and got.event == "three"
        assert reader_threads(client) == []


def test_a_handler_registered_later_gets_everything_in_order_then_receive_again(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        for i in range(3):
            conn.emit("tick", {"i": i})
        assert client.receive(WAIT).data == {"i": 0}  # the rest of that read is queued
        handle = Collector(5)
        unsubscribe = client.on_message(handle)
        for i in range(3, 6):
            conn.emit("tick", {"i": i})
        assert handle.done.wait(WAIT)
        assert handle.got == [1, 2, 3, 4, 5]
        assert f"aurora-read-{client.name}" in handle.threads
        unsubscribe()
        for i in range(6, 9):
            conn.emit("tick", {"i": i})
        assert [client.receive(WAIT).data["i"] for _ in range(3)] == [6, 7, 8]
        for thread in reader_threads(client):  # it stopped at the first read without handlers
            thread.join(WAIT)
        assert reader_threads(client) == []
        assert handle.got == [1, 2, 3, 4, 5]


def test_the_reader_thread_stops_when_the_last_handler_leaves_even_if_nothing_arrives(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        unsubscribe = client.on_message(lambda msg: None)
        assert len(reader_threads(client)) == 1
        unsubscribe()
        for thread in reader_threads(client):
            thread.join(WAIT)  # within a second or so, not at the next message
        assert reader_threads(client) == []
        conn.emit("after")
        assert client.receive(WAIT).event == "after"  # read on this thread again


def test_the_server_closing_wakes_a_receive_blocked_in_its_read(
    server: LocalSocketChannelServer, run_in_thread: ThreadRunner
) -> None:
    client, conn = connect_pair(server)
    blocked = threading.Event()

    def wait_for_reply() -> None:
        blocked.set()
        client.receive(timeout=30.0)

    waiter = run_in_thread.start(wait_for_reply)
    assert blocked.wait(WAIT)
    conn.close()
    assert type(waiter.exception(WAIT)) is Disconnected
    assert client.is_shutdown() and not client.is_connected
    with pytest.raises(Disconnected):
        client.emit("anyone?")


def test_concurrent_receivers_get_distinct_messages_and_none_is_lost(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        receivers, count = 3, 600
        got: list[list[int]] = [[] for _ in range(receivers)]

        def receive_all(k: int) -> None:
            while True:
                try:
                    msg = client.receive(WAIT)
                except Disconnected:
                    return
                if msg.event == "end":
                    return
                got[k].append(msg.data["i"])

        threads = [threading.Thread(target=receive_all, args=(k,)) for k in range(receivers)]
        for thread in threads:
            thread.start()
        for i in range(count):
            conn.emit("tick", {"i": i})
        for _ in range(receivers):
            conn.emit("end")
        for thread in threads:
            thread.join(WAIT + 5.0)
        assert not any(thread.is_alive() for thread in threads)
        every = sorted(i for part in got for i in part)
        assert every == list(range(count))  # each message once: none lost, none twice
        for part in got:
            assert part == sorted(part)  # each receiver sees them in order


def test_batch_holds_this_threads_sends_and_writes_them_in_order_at_its_end(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    with client:
        with client.batch():
            for i in range(100):
                client.emit("tick", {"i": i})
            with client.batch():  # nested: the outer block writes
                client.emit("tick", {"i": 100})

            def another_thread() -> None:
                with client.batch():  # does not wait for ours, holds nothing
                    client.emit("other")

            from_another_thread = threading.Thread(target=another_thread)
            from_another_thread.start()
            from_another_thread.join(WAIT)
            assert not from_another_thread.is_alive()
            # Only the other thread's event has been written so far.
            assert conn.receive(WAIT).event == "other"
            assert conn.try_receive() is None
            assert client.metrics.messages_sent == 2  # hello, other
        got = [conn.receive(WAIT).data["i"] for _ in range(101)]
        assert got == list(range(101))
        assert client.metrics.messages_sent == 103


def test_a_large_batch_writes_as_it_goes(server: LocalSocketChannelServer) -> None:
    client, conn = connect_pair(server)
    payload = "x" * 1000
    with client:
        with client.batch():
            for i in range(600):  # ~600 KB: over the held limit twice
                client.emit("tick", {"i": i, "payload": payload})
            assert conn.receive(WAIT).data["i"] == 0  # written before the block ended
        got = [conn.receive(WAIT).data["i"] for _ in range(599)]
        assert got == list(range(1, 600))


def test_a_batch_raises_at_its_end_when_the_peer_is_gone_and_the_server_skips_it(
    server: LocalSocketChannelServer,
) -> None:
    client, conn = connect_pair(server)
    other_client, other_conn = connect_pair(server)
    with other_client:
        with server.batch():
            server.emit("tick", {"i": 1})
            client.close()
            client_gone = threading.Event()
            conn.shutdown_state.on_shutdown(client_gone.set)
            assert client_gone.wait(WAIT)  # the server saw the client leave
            server.emit("tick", {"i": 2})
        assert [other_client.receive(WAIT).data["i"] for _ in range(2)] == [1, 2]
    with pytest.raises((Disconnected, ShuttingDown)), other_conn.batch():
        other_conn.emit("late")


def test_a_broadcast_right_after_connect_reaches_the_new_client(
    server: LocalSocketChannelServer,
) -> None:
    # The server lists a connection before its ready goes out: once connect() has
    # returned, the client is among those a broadcast reaches.
    for i in range(100):
        with LocalSocketChannel.connect(server.name, token="s3cret") as client:
            server.emit("welcome", i)
            assert client.receive(WAIT).data == i


def test_the_ready_comes_first_even_with_broadcasts_and_sends_right_after_accept(
    name: str,
) -> None:
    from rawclient import RawClient

    with LocalSocketChannelServer(name) as server:
        stop = threading.Event()

        def broadcast() -> None:
            while not stop.is_set():
                server.emit("noise")

        def greet() -> None:
            while not stop.is_set():
                try:
                    server.accept(timeout=0.1).emit("welcome")
                except (ChannelTimeout, Disconnected, ShuttingDown):
                    continue  # none yet, or that client has already hung up

        threads = [threading.Thread(target=broadcast), threading.Thread(target=greet)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(30):
                with RawClient.connect(name) as raw:
                    assert raw.hello()["type"] == "ready"  # the first frame it gets
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT)


# -- a receive() that reads for itself polls first (READ_SPIN) ----------------


@pytest.fixture
def child_server(name: str, children: ChildProcesses) -> str:
    """A ``LocalSocketChannelServer`` in a child process (``children/ls_server.py``):
    returns its name."""
    children.spawn("ls_server.py", name)
    return name


@pytest.mark.subprocess
def test_a_client_of_another_process_polls_before_it_sleeps_and_misses_nothing(
    child_server: str,
) -> None:
    client = LocalSocketChannel.connect(
        child_server, retry=RetryPolicy(attempts=100, max_delay=0.1)
    )
    with client:
        cores = len(os.sched_getaffinity(0))
        assert client._spin == (READ_SPIN if cores > 1 else 0.0)  # the rule, on this machine
        # Replies due within microseconds: most are taken while polling.
        for i in range(300):
            request = IpcMessage.request("echo", {"i": i})
            client.send(request)
            reply = client.receive(WAIT)
            assert (reply.id, reply.data) == (request.id, {"i": i})
        # A reply after the poll: the read sleeps for it in the kernel.
        client.send(IpcMessage.request("late", {"after": 0.05, "i": "late"}))
        assert client.receive(WAIT).data["i"] == "late"
        # Timeouts shorter and longer than the poll, nothing coming.
        for timeout in (READ_SPIN / 2, 0.05):
            started = time.monotonic()
            with pytest.raises(ChannelTimeout):
                client.receive(timeout=timeout)
            assert timeout <= time.monotonic() - started < timeout + 1.0
        # The server hangs up while the client waits: Disconnected, promptly.
        client.send(IpcMessage.request("hang_up", {"after": 0.05}))
        started = time.monotonic()
        with pytest.raises(Disconnected):
            client.receive(timeout=30.0)
        assert time.monotonic() - started < WAIT


def test_a_client_of_this_process_never_polls(server: LocalSocketChannelServer) -> None:
    # Polling holds the GIL between system calls: the thread about to answer
    # would have to wait for the poll to end.
    client, _conn = connect_pair(server)
    with client:
        assert client._spin == 0.0


# -- the read turn, the fast path's switch, a send after the peer left ---------


def test_the_read_turn_moves_only_along_its_documented_transitions() -> None:
    woken: list[int] = []
    turn = ReadTurn(lambda: woken.append(1))
    assert turn.state is ReadState.IDLE and turn.free
    turn.take(by_reader=False)  # a receive() caller, no reader thread
    assert turn.state is ReadState.CALLER_READING and turn.held_here()
    with pytest.raises(RuntimeError):
        turn.take(by_reader=True)  # nobody takes a held turn
    turn.give_back()
    assert turn.state is ReadState.IDLE and not turn.held_here() and woken
    assert turn.start_reader() and turn.state is ReadState.READER_WAITING
    assert not turn.start_reader()  # one reader thread at most
    turn.take(by_reader=False)  # a wait_event caller while the reader polls
    turn.give_back()
    assert turn.state is ReadState.READER_WAITING  # the reader is still there
    turn.take(by_reader=True)
    assert turn.state is ReadState.READER_READING
    turn.give_back()
    turn.stop_reader()
    assert turn.state is ReadState.IDLE
    assert turn.begin_end() and turn.state is ReadState.ENDING and not turn.free
    assert not turn.begin_end()  # the end is decided once
    assert not turn.start_reader()  # no reader thread for a connection that ends
    turn.finish_end()
    assert turn.state is ReadState.ENDED and turn.over


def test_a_send_after_the_server_left_raises_on_a_client_that_reads_nothing(
    server: LocalSocketChannelServer,
) -> None:
    # Nobody reads the client, so the failed write itself ends the channel.
    client, conn = connect_pair(server)
    conn.close()
    result: list[BaseException] = []

    def send_until_it_fails() -> None:
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                client.emit("still.there")
                time.sleep(0.01)
        except Disconnected as exc:
            result.append(exc)

    sender = threading.Thread(target=send_until_it_fails, daemon=True)
    sender.start()
    sender.join(WAIT + 2.0)
    assert not sender.is_alive(), "the send hung"
    assert len(result) == 1
    assert client.read_state is ReadState.ENDED and client.is_shutdown()
    with pytest.raises(Disconnected):
        client.emit("again")
    with pytest.raises(Disconnected):
        client.receive(timeout=WAIT)


def test_with_the_fast_path_off_the_reader_thread_delivers_a_waited_for_reply(
    server: LocalSocketChannelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket_channel, "READ_SPIN", 0.0)
    client, conn = connect_pair(server)
    with client:
        assert client._spin == 0.0
        got: list[tuple[str, str]] = []
        replied = threading.Event()

        def on_reply(msg: IpcMessage) -> None:
            got.append((msg.id or "", threading.current_thread().name))
            replied.set()

        client.on_message(on_reply)
        conn.on_message(lambda msg: conn.send(IpcMessage.response(msg.id, msg.data)))
        for i in range(20):
            replied.clear()
            request = IpcMessage.request("echo", {"i": i})
            client.send(request)
            assert client.wait_event(replied, WAIT)
            assert got[-1] == (request.id, f"aurora-read-{client.name}")


def test_wait_event_returns_false_only_after_its_timeout_even_if_the_channel_closes(
    server: LocalSocketChannelServer,
) -> None:
    # Whoever watches the shutdown (a Peer failing its calls) sets the event after
    # the close: a False from wait_event must only ever mean "timed out".
    client, _conn = connect_pair(server)
    client.on_message(lambda msg: None)  # a reader thread; a waiting caller reads itself
    event = threading.Event()
    outcome: list[tuple[bool, float]] = []

    def wait() -> None:
        started = time.monotonic()
        outcome.append((client.wait_event(event, WAIT), time.monotonic() - started))

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + WAIT
    while client.read_state is not ReadState.CALLER_READING:
        assert time.monotonic() < deadline, "the waiter never took the read turn"
        time.sleep(0.001)
    client.close()
    time.sleep(0.1)
    assert waiter.is_alive()  # closed, but neither set nor timed out yet
    event.set()
    waiter.join(WAIT)
    assert outcome and outcome[0][0] is True and outcome[0][1] < WAIT
