"""``mesh.points`` over a real socket: the standalone host's sample points, Blender's real mesh.

Each host runs in a child process; this process is the tool: a ``Peer`` over
a ``LocalSocketChannel`` that offers shared memory, so points above the
buffer threshold come through a shared-memory block and small ones inline.
What is checked is what a tool relies on: a buffer (a ``memoryview``, or a
numpy array where numpy is installed) of float32 rows, shape (n, 3), holding
exactly the host's values; bad params answered -32602 with the connection
still usable.
"""

from __future__ import annotations

import array
import importlib.util
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple, Optional

import pytest
from support import ChildProcesses, unique_channel_name, wait_until

from aurora_dcc import BufferSettings
from aurora_dcc.errors import ErrorCode
from aurora_dcc.hosts.points import MAX_POINTS
from aurora_dcc.rpc.call_error import IpcCallError
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel
from aurora_dcc.transport.shared_memory import list_blocks

pytestmark = pytest.mark.subprocess

needs_bpy = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None,
    reason="the bpy module is not installed in this Python (it exists for CPython 3.11 only:"
    " the test extra installs it there, or pip install -e '.[blender]')",
)

SHM_COUNT = 20_000
"""Points whose 240,000 bytes are above the default buffer threshold: a shared-memory block."""


def expected_points(count: int, seed: int) -> list[list[float]]:
    """What ``random_points`` promises, computed here from its documented rule."""
    uniform = random.Random(seed).random
    flat = array.array("f", [uniform() * 2.0 - 1.0 for _ in range(3 * count)]).tolist()
    return [flat[i : i + 3] for i in range(0, len(flat), 3)]


def tool(channel: str, *, numpy: Optional[bool]) -> Peer:
    """A tool's ``Peer`` on ``channel``; ``numpy=False``: buffers arrive as memoryviews."""
    connection = LocalSocketChannel.connect(channel, timeout=20.0, retry=40)
    connection.set_buffer_settings(BufferSettings(numpy=numpy))
    return Peer(connection, timeout=20.0)


class Standalone(NamedTuple):
    channel: str
    pid: int

    def blocks(self) -> list[str]:
        """The host's shared-memory blocks (``ad<uid>_<pid>_...``: docs/buffers.md)."""
        return [name for name in list_blocks() if f"_{self.pid}_" in name]


@pytest.fixture
def standalone(children: ChildProcesses) -> Iterator[Standalone]:
    """A ``StandaloneHost`` in a child process."""
    channel = unique_channel_name("aurora_points")
    proc = children.spawn("standalone_host.py", channel, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield Standalone(channel, proc.pid)
    assert children.stop(proc, timeout=10.0) == 0


@pytest.mark.parametrize("count", [10, SHM_COUNT])
def test_standalone_points_arrive_as_a_float32_memoryview_of_rows(
    standalone: Standalone, count: int
) -> None:
    peer = tool(standalone.channel, numpy=False)
    try:
        points = peer.request("mesh.points", {"count": count, "seed": 7})
        assert isinstance(points, memoryview)
        assert (points.format, points.shape) == ("f", (count, 3))
        assert points.tolist() == expected_points(count, 7)
        if count == SHM_COUNT and sys.platform.startswith("linux"):
            assert standalone.blocks(), "the points did not come through shared memory"
        assert peer.request("mesh.points", {"count": 0}).nbytes == 0
    finally:
        peer.close()


def test_standalone_points_arrive_as_a_numpy_array_where_numpy_is_installed(
    standalone: Standalone,
) -> None:
    numpy = pytest.importorskip("numpy", reason="numpy is an optional extra of the package")
    peer = tool(standalone.channel, numpy=None)
    try:
        points = peer.request("mesh.points", {"count": SHM_COUNT, "seed": 3})
        assert isinstance(points, numpy.ndarray)
        assert (points.dtype, points.shape) == (numpy.float32, (SHM_COUNT, 3))
        expected = numpy.array(expected_points(SHM_COUNT, 3), dtype=numpy.float32)
        assert numpy.array_equal(points, expected)
    finally:
        peer.close()


@pytest.mark.parametrize(
    "params", [{"count": -1}, {"count": MAX_POINTS + 1}, {"count": "many"}, {"seed": 1.5}]
)
def test_bad_point_params_are_refused_and_the_connection_stays_usable(
    standalone: Standalone, params: dict[str, Any]
) -> None:
    peer = tool(standalone.channel, numpy=False)
    try:
        with pytest.raises(IpcCallError) as refused:
            peer.request("mesh.points", params)
        assert refused.value.code == ErrorCode.INVALID_PARAMS
        assert peer.request("mesh.points", {"count": 2}).shape == (2, 3)
    finally:
        peer.close()


@needs_bpy
def test_blender_returns_a_real_meshs_vertex_positions(children: ChildProcesses) -> None:
    channel = unique_channel_name("aurora_bpy_points")
    proc = children.spawn(
        "blender_module_host.py", channel, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    peers: list[Peer] = []

    def connected() -> bool:  # importing bpy takes a second or more
        if proc.poll() is not None:
            return True
        try:
            peers.append(tool(channel, numpy=False))
        except OSError:
            return False
        return True

    assert wait_until(connected, timeout=60.0) and peers, proc.communicate(timeout=10.0)
    peer = peers[0]
    try:
        uniform = random.Random(11).uniform
        vertices = [[uniform(-5.0, 5.0) for _ in range(3)] for _ in range(SHM_COUNT)]
        assert (
            peer.request("test.create_mesh", {"name": "Points", "vertices": vertices}) == "Points"
        )
        points = peer.request("mesh.points", {"node": "Points"})
        assert (points.format, points.shape) == ("f", (SHM_COUNT, 3))
        flat = array.array("f", [value for vertex in vertices for value in vertex]).tolist()
        assert points.tolist() == [flat[i : i + 3] for i in range(0, len(flat), 3)]
        cube = peer.request("mesh.points", {"node": "Cube"})
        assert sorted(map(tuple, cube.tolist())) == sorted(
            (x, y, z) for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)
        )
        for node, why in (("Camera", "not a MESH"), ("Nope", "no object")):
            with pytest.raises(IpcCallError) as refused:
                peer.request("mesh.points", {"node": node})
            assert refused.value.code == ErrorCode.INVALID_PARAMS and why in refused.value.message
        assert peer.request("test.stop") is True
    finally:
        peer.close()
    assert children.stop(proc, timeout=60.0) == 0
