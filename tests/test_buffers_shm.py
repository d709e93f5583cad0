"""Buffers through shared memory on real sockets: pools, leases, bounds, bad input, crashes.

Every test checks that no block of this process is left in ``/dev/shm``
(``list_blocks``); the crash tests check the blocks of their child too.
"""

from __future__ import annotations

import array
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rawclient import RawClient
from support import ChildProcesses, SocketPair, open_socket_pair, wait_until
from test_buffers import plain

from aurora_dcc.errors import ChannelTimeout, ErrorCode, SerializationError
from aurora_dcc.protocol.buffer_values import release_buffers
from aurora_dcc.protocol.buffers import BufferSettings, buffer_settings, configure_buffers
from aurora_dcc.rpc.call_error import IpcCallError
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.rpc.server import RpcServer
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer
from aurora_dcc.transport.shared_memory import (
    USER_PREFIX,
    BlockMaps,
    BlockPool,
    connection_prefix,
    list_blocks,
    sweep,
)
from aurora_dcc.transport.shm_block import create_block, unlink_block

np = pytest.importorskip("numpy", reason="numpy is in the test extra")
pytestmark = pytest.mark.skipif(
    not os.path.isdir("/dev/shm"), reason="the checks read /dev/shm (Linux)"
)

MiB = 1024 * 1024
MINE = f"{USER_PREFIX}{os.getpid()}_"


@pytest.fixture(autouse=True)
def no_blocks_left() -> Iterator[None]:
    """Whatever a test did, none of this process's blocks outlives it."""
    yield
    assert wait_until(lambda: not list_blocks(MINE), 5.0), list_blocks(MINE)


def serve_peers(pair: SocketPair) -> tuple[Peer, Peer]:
    """A Peer on each end of ``pair``; the server side answers ``echo`` and ``zeros``."""
    server_peer = Peer(pair.conn)
    server_peer.register("echo", lambda value: value)
    server_peer.register("zeros", lambda nbytes: bytes(nbytes))
    return Peer(pair.client), server_peer


def offered_prefix(channel: Any) -> str:
    """The block-name prefix ``channel``'s peer announced (its blocks on this connection)."""
    prefix = channel.peer_info["buffers"]["prefix"]
    assert isinstance(prefix, str)
    return prefix


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_big_buffers_go_through_shared_memory_both_ways(socket_pair: SocketPair) -> None:
    client, _ = serve_peers(socket_pair)
    points = np.arange(3 * 262144, dtype=np.float32).reshape(-1, 3)
    got = client.request("echo", {"value": {"points": points, "n": 1}}, timeout=10.0)
    assert got["n"] == 1
    assert got["points"].dtype == np.float32 and got["points"].shape == points.shape
    assert np.array_equal(got["points"], points)
    # one block each way: the client's (params) and the server's (result)
    assert len(list_blocks(offered_prefix(socket_pair.conn))) == 1
    assert len(list_blocks(offered_prefix(socket_pair.client))) == 1


def test_nested_buffers_of_every_size_survive_a_socket_both_ways(socket_pair: SocketPair) -> None:
    """Hypothesis over a live connection: buffers below and above the threshold (inline
    and shared memory in one message), nested in JSON, as params and as the result."""
    client, _ = serve_peers(socket_pair)
    socket_pair.client.set_buffer_settings(BufferSettings(threshold=4096, numpy=False))
    socket_pair.conn.set_buffer_settings(BufferSettings(threshold=4096, numpy=False))
    sizes = st.sampled_from([0, 1, 4095, 4096, 70_000])
    buffer = st.one_of(
        sizes.map(lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)),
        sizes.map(lambda n: bytearray(n)),
        sizes.map(lambda n: np.arange(n // 8, dtype=np.float64)),
        sizes.map(lambda n: array.array("i", range(n // 4))),
    )
    leaf = st.none() | st.integers(-5, 5) | st.text(max_size=4) | buffer
    tree = st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    )

    @settings(max_examples=40, deadline=None)
    @given(tree)
    def round_trip(value: Any) -> None:
        got = client.request("echo", {"value": [value]}, timeout=10.0)  # a None result is {}
        assert plain(got) == plain([value])

    round_trip()


def test_small_buffers_go_inline(socket_pair: SocketPair) -> None:
    client, _ = serve_peers(socket_pair)
    small = array.array("d", range(100))
    got = client.request("echo", {"value": [small, b"abc"]}, timeout=10.0)
    assert got[0].tolist() == small.tolist() and bytes(got[1]) == b"abc"
    assert not list_blocks(MINE)


def test_events_and_broadcasts_carry_buffers(socket_pair: SocketPair) -> None:
    client, server_peer = serve_peers(socket_pair)
    heard: list[Any] = []
    client.on("frame", lambda event, data: heard.append(data))
    image = np.full((512, 512, 4), 7, dtype=np.uint8)  # 1 MiB
    server_peer.emit("frame", {"image": image})
    socket_pair.server.emit("frame", {"image": image, "broadcast": True})
    assert wait_until(lambda: len(heard) == 2, 10.0)
    for data in heard:
        assert np.array_equal(data["image"], image)
    assert heard[1]["broadcast"] is True


def test_a_thousand_transfers_of_a_mebibyte_map_nothing_new(socket_pair: SocketPair) -> None:
    client, _ = serve_peers(socket_pair)
    server_blocks = offered_prefix(socket_pair.client)
    for _ in range(20):  # warm up: the pool and the allocator settle
        client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    blocks, rss = list_blocks(server_blocks), rss_bytes()
    for _ in range(1000):
        data = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
        assert data.nbytes == MiB
    assert list_blocks(server_blocks) == blocks == [f"{server_blocks}1"]
    assert rss_bytes() - rss < 32 * MiB


def mapped(prefix: str) -> list[str]:
    """This process's mappings of blocks named ``prefix...``, removed ones included."""
    with open("/proc/self/maps") as maps:
        return sorted({line.split("/dev/shm/", 1)[1].strip() for line in maps if prefix in line})


def test_a_receiver_unmaps_blocks_its_sender_removed(socket_pair: SocketPair) -> None:
    client, _ = serve_peers(socket_pair)
    socket_pair.conn.set_buffer_settings(BufferSettings(max_shared_bytes=2 * MiB))
    theirs = offered_prefix(socket_pair.client)
    client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    assert mapped(theirs) == [f"{theirs}1"]  # the server's block, mapped here twice over
    client.request("zeros", {"nbytes": 2 * MiB}, timeout=10.0)  # room made: block 1 removed
    assert list_blocks(theirs) == [f"{theirs}2"]
    assert mapped(theirs) == [f"{theirs}2"]  # and unmapped here: its memory is free


@pytest.mark.parametrize("zero_copy", [False, True], ids=["copy", "zero-copy"])
def test_repeated_transfers_open_each_block_of_the_sender_once(
    socket_pair: SocketPair, monkeypatch: pytest.MonkeyPatch, zero_copy: bool
) -> None:
    """The receiver keeps its peer's blocks mapped: 200 transfers open no more of
    them than the sender's pool holds, a zero-copy view being the same mapping."""
    client, _ = serve_peers(socket_pair)
    socket_pair.client.set_buffer_settings(BufferSettings(zero_copy=zero_copy, numpy=False))
    theirs = offered_prefix(socket_pair.client)
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(f"/dev/shm/{theirs}") and not flags & os.O_CREAT:
            opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    for _ in range(200):
        data = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
        assert data.nbytes == MiB and data.readonly is zero_copy
        assert release_buffers(data) == int(zero_copy)
    monkeypatch.undo()
    blocks = list_blocks(theirs)
    assert 1 <= len(opened) <= len(blocks), (len(opened), blocks)
    assert len(set(opened)) == len(opened)


@pytest.mark.parametrize("change", ["same-size", "bigger", "removed"])
def test_a_block_made_anew_under_its_name_is_mapped_anew(change: str) -> None:
    """A kept mapping is checked against the name at each descriptor: a peer that
    removed a block, or made another under its name, never gets the old one read."""
    prefix = connection_prefix()
    name = f"{prefix}1"
    maps = BlockMaps(peer_prefix=prefix)
    block = create_block(name, MiB)
    try:
        block.buf[:3] = b"old"
        assert maps.copy_out(name, 0, 3) == b"old"
        block.close()
        unlink_block(name)
        if change == "removed":
            with pytest.raises(SerializationError, match="no shared-memory block"):
                maps.copy_out(name, 0, 3)
            return
        size = MiB if change == "same-size" else 2 * MiB
        block = create_block(name, size)
        block.buf[size - 3 : size] = b"new"
        assert maps.copy_out(name, size - 3, 3) == b"new"
    finally:
        maps.close(remove_peer_blocks=False)
        block.close()
        unlink_block(name)


def test_zero_copy_views_are_read_only_and_lent_until_released(
    socket_pair_factory: Any,
) -> None:
    pair = socket_pair_factory()
    client, _ = serve_peers(pair)
    pair.client.set_buffer_settings(BufferSettings(zero_copy=True, numpy=False))
    pair.conn.set_buffer_settings(BufferSettings(max_shared_bytes=2 * MiB, wait_timeout=0.5))
    first = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    second = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    assert isinstance(first, memoryview) and first.readonly
    # both of the server's blocks are lent: the next response cannot be placed
    with pytest.raises(IpcCallError, match="returned no shared-memory block"):
        client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    assert release_buffers(first) == 1
    with pytest.raises(ValueError):
        first.tobytes()  # released: it can never show a reused block
    third = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    assert bytes(third) == bytes(MiB)
    assert release_buffers([second, third]) == 2


def test_a_view_that_outlives_its_lease_keeps_the_block_from_reuse(
    socket_pair_factory: Any,
) -> None:
    pair = socket_pair_factory()
    client, _ = serve_peers(pair)
    pair.client.set_buffer_settings(BufferSettings(zero_copy=True, numpy=True))
    pair.conn.set_buffer_settings(BufferSettings(max_shared_bytes=MiB, wait_timeout=0.5))
    kept = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    part = kept[10:20]  # a numpy view of the block
    release_buffers(kept)
    del kept
    with pytest.raises(IpcCallError, match="returned no shared-memory"):  # still viewed
        client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    assert not part.flags.writeable and part.sum() == 0
    del part  # the last view: the block goes back (from the returner thread)
    assert wait_until(lambda: _can_get(client), 5.0)


def _can_get(client: Peer) -> bool:
    try:
        data = client.request("zeros", {"nbytes": MiB}, timeout=10.0)
    except Exception:
        return False
    release_buffers(data)
    return True


def test_a_slow_receiver_makes_the_sender_wait_then_time_out(socket_pair: SocketPair) -> None:
    heard: list[Any] = []
    socket_pair.conn.set_buffer_settings(BufferSettings(zero_copy=True, numpy=False))
    socket_pair.conn.on_message(heard.append)
    sender = Peer(socket_pair.client)
    socket_pair.client.set_buffer_settings(
        BufferSettings(max_shared_bytes=2 * MiB, wait_timeout=0.3)
    )
    sender.emit("chunk", bytes(MiB))
    sender.emit("chunk", bytes(MiB))
    assert wait_until(lambda: len(heard) == 2, 5.0)
    with pytest.raises(ChannelTimeout, match="returned no shared-memory block"):
        sender.emit("chunk", bytes(MiB))
    release_buffers(heard.pop(0).data)  # the receiver catches up: the sender goes on
    socket_pair.client.set_buffer_settings(BufferSettings(max_shared_bytes=2 * MiB))
    sender.emit("chunk", bytes(MiB))  # waits (30 s at most) for the release on its way
    assert wait_until(lambda: len(heard) == 2, 5.0)
    release_buffers([msg.data for msg in heard])


# -- bad input ------------------------------------------------------------------


@pytest.fixture
def offered_blocks() -> Iterator[tuple[str, BlockPool]]:
    """A pool of blocks named like a peer's, for a raw client to describe."""
    pool = BlockPool(connection_prefix(), max_bytes=16 * MiB)
    yield pool.prefix, pool
    pool.close()


@pytest.fixture
def measuring_server(socket_server: LocalSocketChannelServer) -> Iterator[str]:
    """``socket_server`` answering ``echo`` with the length of its buffer; its name."""
    rpc = RpcServer(socket_server)
    rpc.register("echo", lambda value: len(value))
    yield socket_server.name
    rpc.close()


def raw_hello(raw: RawClient, prefix: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"protocol": 1, "peer": "raw"}
    if prefix is not None:
        data["buffers"] = {"shm": True, "prefix": prefix}
    raw.send({"type": "hello", "data": data})
    return raw.recv()


def shm_request(name: str, nbytes: int, msg_id: str) -> dict[str, Any]:
    body = {"format": "B", "shape": [nbytes], "shm": name, "offset": 0, "nbytes": nbytes}
    return {
        "type": "request",
        "id": msg_id,
        "method": "echo",
        "data": {"value": {"$buffer": {**body, "lease": "1"}}},
        "buffers": 1,
    }


def describe(server: str, prefix: str | None, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` from a raw client that announced ``prefix``; the reply to it."""
    with RawClient.connect(server) as raw:
        assert raw_hello(raw, prefix)["type"] == "ready"
        raw.send(frame)
        reply = raw.recv_until(lambda f: f.get("id") == frame["id"])
        raw.send({"type": "ping", "id": "p"})  # the connection still serves
        assert raw.recv_until(lambda f: f["type"] == "pong")["id"] == "p"
        return reply


def test_bad_shared_memory_descriptors_are_refused_and_the_connection_stays(
    measuring_server: str, offered_blocks: tuple[str, BlockPool]
) -> None:
    prefix, pool = offered_blocks
    other = BlockPool(connection_prefix(), max_bytes=MiB)
    try:
        name, _ = pool.lend(memoryview(b"x" * 1000), wait=None)
        foreign, _ = other.lend(memoryview(b"y" * 1000), wait=None)
        with RawClient.connect(measuring_server) as raw:
            assert raw_hello(raw, prefix)["type"] == "ready"
            cases = {
                "missing": shm_request(f"{prefix}99", 10, "missing"),
                "small": shm_request(name, 4 * MiB, "small"),
                "not-offered": shm_request(foreign, 10, "not-offered"),
                "bad-name": shm_request("../etc/passwd", 10, "bad-name"),
            }
            for msg_id, frame in cases.items():
                raw.send(frame)
                reply = raw.recv_until(lambda f, i=msg_id: f.get("id") == i)
                assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS, reply
            raw.send(shm_request(name, 1000, "good"))
            assert raw.recv_until(lambda f: f.get("id") == "good")["data"] == 1000
            raw.send({"type": "ping", "id": "p"})
            assert raw.recv_until(lambda f: f["type"] == "pong")["id"] == "p"
    finally:
        other.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_a_block_of_another_user_is_refused(
    measuring_server: str, offered_blocks: tuple[str, BlockPool]
) -> None:
    prefix, pool = offered_blocks
    name, _ = pool.lend(memoryview(b"x" * 1000), wait=None)
    os.chown(f"/dev/shm/{name}", 65534, 65534)
    reply = describe(measuring_server, prefix, shm_request(name, 10, "theirs"))
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "another user" in reply["error"]["message"]


@pytest.mark.parametrize("prefix", [None, "", "ad"], ids=["none", "empty", "too-short"])
def test_a_peer_that_offered_no_prefix_cannot_name_blocks(
    measuring_server: str, offered_blocks: tuple[str, BlockPool], prefix: str | None
) -> None:
    name, _ = offered_blocks[1].lend(memoryview(b"x" * 1000), wait=None)
    reply = describe(measuring_server, prefix, shm_request(name, 10, "r"))
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "not offered on this connection" in reply["error"]["message"]


def test_without_shared_memory_a_process_offers_none_and_sends_inline(channel_name: str) -> None:
    before = buffer_settings()
    configure_buffers(shared_memory=False)
    try:
        pair = open_socket_pair(channel_name)
    finally:
        configure_buffers(shared_memory=before.shared_memory)
    try:
        assert "buffers" not in pair.conn.peer_info and "buffers" not in pair.client.peer_info
        client, _ = serve_peers(pair)
        got = client.request("echo", {"value": bytes(MiB)}, timeout=10.0)
        assert got.nbytes == MiB and not list_blocks(MINE)
    finally:
        pair.client.close()
        pair.conn.close()
        pair.server.close()


@pytest.mark.parametrize("says_hello", [True, False], ids=["hello-without-buffers", "no-hello"])
def test_a_plain_ndjson_client_gets_buffers_inline(
    socket_server: LocalSocketChannelServer, says_hello: bool
) -> None:
    rpc = RpcServer(socket_server)
    points = np.arange(262144, dtype=np.float32)  # 1 MiB: shared memory for a 1.1 peer
    rpc.register("points", lambda: {"points": points, "$note": "x"})
    try:
        with RawClient.connect(socket_server.name) as raw:
            if says_hello:
                ready = raw.hello()
                assert ready["data"]["buffers"]["shm"] is True  # offered; not announced back
            reply = raw.request("points", id="p1")
            assert reply["buffers"] == 1
            assert reply["data"]["$$note"] == "x"
            body = reply["data"]["points"]["$buffer"]
            assert (body["format"], body["shape"]) == ("f", [262144])
            assert base64.b64decode(body["data"]) == points.tobytes()
    finally:
        rpc.close()
    assert not list_blocks(MINE)


# -- crashes --------------------------------------------------------------------


def _no_tracker_noise(stderr: str) -> None:
    assert "resource_tracker" not in stderr and "leaked" not in stderr, stderr


@pytest.mark.subprocess
def test_sigkill_of_the_sender_leaves_no_block_once_the_receiver_notices(
    children: ChildProcesses, channel_name: str, tmp_path: Any
) -> None:
    err = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - the child writes to it meanwhile
    proc = children.spawn("buffer_peer.py", "serve", channel_name, stdout=-1, stderr=err, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
    channel = LocalSocketChannel.connect(channel_name, retry=50)
    channel.set_buffer_settings(BufferSettings(zero_copy=True, numpy=True))
    peer = Peer(channel)
    try:
        kept = [peer.request("points", {"n": 262144}, timeout=10.0) for _ in range(3)]
        theirs = offered_prefix(channel)
        assert len(list_blocks(theirs)) == 3  # all lent to us
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5.0)
        assert wait_until(lambda: not channel.is_connected, 5.0)
        assert wait_until(lambda: not list_blocks(theirs), 5.0), list_blocks(theirs)
        assert all(int(a.sum()) == 0 for a in kept)  # our views outlive the removed names
        release_buffers(kept)
    finally:
        peer.close()
        channel.close()
        LocalSocketChannelServer(channel_name).close()  # the dead server's socket file
    err.seek(0)
    _no_tracker_noise(err.read())
    err.close()


@pytest.mark.subprocess
def test_sigkill_of_the_receiver_leaves_no_block_once_the_sender_notices(
    children: ChildProcesses, socket_server: LocalSocketChannelServer, tmp_path: Any
) -> None:
    rpc = RpcServer(socket_server)
    rpc.register("points", lambda n: np.zeros(n, dtype=np.float32))
    err = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - the child writes to it meanwhile
    try:
        proc = children.spawn(
            "buffer_peer.py", "hold", socket_server.name, stdout=-1, stderr=err, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().split() == ["holding", "3"]
        assert len(list_blocks(MINE)) == 3  # our blocks, lent to the child
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5.0)
        assert wait_until(lambda: not list_blocks(MINE), 5.0), list_blocks(MINE)
        child_blocks = f"{USER_PREFIX}{proc.pid}_"
        assert not list_blocks(child_blocks)
    finally:
        rpc.close()
    err.seek(0)
    _no_tracker_noise(err.read())
    err.close()


@pytest.mark.subprocess
def test_the_sweep_removes_blocks_whose_owner_is_gone(children: ChildProcesses) -> None:
    proc = children.spawn("buffer_peer.py", "orphan", stdout=-1, stderr=-1, text=True)
    assert proc.stdout is not None
    word, prefix = proc.stdout.readline().split()
    assert word == "lent" and len(list_blocks(prefix)) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5.0)
    sweep()  # (a sweep by any other process of this user may have come first)
    assert not list_blocks(prefix)
    assert proc.stderr is not None
    _no_tracker_noise(proc.stderr.read())


@pytest.mark.subprocess
def test_importing_the_package_imports_no_numpy() -> None:
    code = "import sys, aurora_dcc, aurora_dcc.transport.buffer_link; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_multiprocessing_blocks_interoperate_and_start_no_resource_tracker(
    socket_pair: SocketPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /dev/shm is not a directory of files (macOS, Windows) blocks are
    ``SharedMemory`` objects: the same names, kept from the resource tracker."""
    from multiprocessing import resource_tracker

    from aurora_dcc.transport import shm_block

    client, _ = serve_peers(socket_pair)
    sent = np.arange(262144, dtype=np.float32)
    assert np.array_equal(client.request("echo", {"value": sent}, timeout=10.0), sent)
    monkeypatch.setattr(shm_block, "_FILES", False)  # new blocks, and every attach, this way
    bigger = np.arange(4 * 262144, dtype=np.float32)
    for _ in range(3):
        assert np.array_equal(client.request("echo", {"value": bigger}, timeout=10.0), bigger)
    assert resource_tracker._resource_tracker._pid is None  # never started


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["local_socket", "legacy"])
def test_a_packed_backend_exchanges_arrays_in_both_transports(mode: str) -> None:
    """The host and its backend (a socket, or the legacy stdin/stdout pipes: both are
    stream channels) move big arrays through shared memory both ways."""
    from aurora_dcc.process.backend import spawn_backend

    script = str(Path(__file__).parent / "children" / "backend_basic.py")
    a = np.arange(262144, dtype=np.float32)
    with spawn_backend([sys.executable, script], mode=mode) as backend:
        for _ in range(3):
            total = backend.request("add", {"a": a, "b": np.ones_like(a)}, timeout=10.0)
            assert total.dtype == np.float32 and np.array_equal(total, a + 1)
        theirs = f"{USER_PREFIX}{backend.pid}_"
        assert len(list_blocks(theirs)) == 1  # the backend's result block, reused
    assert wait_until(lambda: not list_blocks(theirs), 5.0), list_blocks(theirs)
