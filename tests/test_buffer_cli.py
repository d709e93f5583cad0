"""``aurora-dcc call ... --out FILE``: a returned buffer saved raw, summaries printed instead.

A real ``aurora-dcc serve`` (the standalone host) answers ``mesh.points``; the
CLI runs as a child process as a user would run it. What is checked: the
file holds exactly the buffer's bytes; stdout is JSON with the buffer shown as
``{"$buffer": {format, shape, nbytes[, saved]}}``; ``--out`` with a result
that holds no buffer, or several, writes nothing, says where the buffers
are, and exits 1.
"""

from __future__ import annotations

import array
import json
import os
import random
from collections.abc import Iterator

import pytest
from cli_helpers import Runtime

from aurora_dcc.cli.buffer_output import save_single_buffer
from aurora_dcc.cli.client import print_json
from aurora_dcc.cli.exit_codes import CliError, ExitCode

COUNT = 20_000
"""Points: 240,000 bytes, above the buffer threshold (shared memory)."""


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with Runtime.open(monkeypatch) as private:
        yield private


def sample_points(count: int, seed: int) -> bytes:
    """The standalone host's ``mesh.points`` as raw float32 bytes (its documented rule)."""
    uniform = random.Random(seed).random
    return array.array("f", [uniform() * 2.0 - 1.0 for _ in range(3 * count)]).tobytes()


@pytest.mark.subprocess
def test_out_saves_the_returned_buffer_and_prints_its_summary(runtime: Runtime) -> None:
    runtime.serve()
    out = os.path.join(runtime.root, "points.f32")
    done = runtime.cli("call", "mesh.points", f"count={COUNT}", "seed=5", "--out", out)
    assert done.returncode == 0, done.stderr
    summary = {"format": "f", "shape": [COUNT, 3], "nbytes": 12 * COUNT}
    assert json.loads(done.stdout) == {"$buffer": {**summary, "saved": out}}
    with open(out, "rb") as saved:
        assert saved.read() == sample_points(COUNT, 5)
    shown = runtime.cli("call", "mesh.points", "count=10")  # no --out: the summary only
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"$buffer": {"format": "f", "shape": [10, 3], "nbytes": 120}}


@pytest.mark.subprocess
def test_out_without_a_buffer_in_the_result_writes_nothing(runtime: Runtime) -> None:
    runtime.serve()
    out = os.path.join(runtime.root, "info.bin")
    done = runtime.cli("call", "scene.info", "--out", out)
    assert done.returncode == ExitCode.CALL_FAILED
    assert "the result holds 0" in done.stderr and "nothing written" in done.stderr
    assert json.loads(done.stdout)["nodes"] == 0  # the result is still shown
    assert not os.path.exists(out)


def test_out_refuses_several_buffers_and_names_their_paths(tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(tmp_path, "two.bin")
    result = {"a": b"12", "frames": [1, {"img": bytearray(4)}], "n": 3}
    with pytest.raises(CliError) as refused:
        save_single_buffer(result, out)
    assert refused.value.code == ExitCode.CALL_FAILED
    assert "holds 2 (at $.a, $.frames[1].img)" in refused.value.message
    assert not os.path.exists(out)


def test_printed_events_show_buffers_as_summaries(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"event": "frame", "data": {"img": memoryview(bytearray(6)).cast("H", [1, 3])}})
    summary = {"format": "H", "shape": [1, 3], "nbytes": 6}
    assert json.loads(capsys.readouterr().out) == {
        "event": "frame",
        "data": {"img": {"$buffer": summary}},
    }
