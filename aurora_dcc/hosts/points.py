"""Point arrays as buffers: what a host's ``mesh.points`` handler returns.

A point array is ``count`` rows of x, y, z as float32, built without numpy
(``array.array("f")``) and handed to the RPC layer as a ``memoryview`` of
shape ``(count, 3)``: a tool receives it as a buffer (through shared memory
where the connection negotiated it), as a numpy array of that dtype and shape
where numpy is installed. :func:`random_points` makes the standalone host's
sample points; the Blender host fills its array from a real mesh
(:meth:`.blender_scene.BlenderScene.mesh_points`).

Usage::

    host.register("mesh.points", random_points)     # mesh.points {"count": 1000, "seed": 7}
    rows = point_rows(array.array("f", [0.0, 1.0, 2.0]))   # memoryview, shape (1, 3)
"""

from __future__ import annotations

import array
import random

from ..errors import ErrorCode
from ..rpc.call_error import IpcCallError

__all__ = ["MAX_POINTS", "point_rows", "random_points"]

MAX_POINTS = 10_000_000
"""The most points :func:`random_points` makes (120 MB of float32): a bound, not a size hint."""


def point_rows(coordinates: array.array[float]) -> memoryview[float]:
    """``coordinates`` (x, y, z, x, y, z, ... as float32) as a ``memoryview`` of shape (n, 3).

    With no points the view is one-dimensional and empty (a memoryview
    cannot have a zero in its shape).
    """
    if coordinates.typecode != "f" or len(coordinates) % 3:
        raise ValueError("coordinates must be float32 ('f'), three per point")
    as_bytes = memoryview(coordinates).cast("B")
    if not coordinates:
        return as_bytes.cast("f")
    return as_bytes.cast("f", (len(coordinates) // 3, 3))


def random_points(count: int = 1000, seed: int = 0) -> memoryview[float]:
    """``count`` points, uniform in [-1, 1) on each axis, from ``random.Random(seed)``.

    The coordinates are ``rng.random() * 2 - 1`` for x, y, z of each point in
    turn, rounded to float32: a client can compute the same values to check
    what it received. Refuses (-32602) a count that is not an integer in
    0..``MAX_POINTS`` or a seed that is not an integer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_POINTS:
        raise IpcCallError(
            ErrorCode.INVALID_PARAMS, f"count must be an integer from 0 to {MAX_POINTS:,}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise IpcCallError(ErrorCode.INVALID_PARAMS, "seed must be an integer")
    uniform = random.Random(seed).random
    coordinates = array.array("f", [uniform() * 2.0 - 1.0 for _ in range(3 * count)])
    return point_rows(coordinates)
