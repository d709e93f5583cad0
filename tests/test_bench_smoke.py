"""The transport benchmark still runs: every row, tiny N, as ``make bench`` would run it.

Speed itself is not asserted (a shared machine makes timings noise); what is
asserted is that every transport of ``bench/bench_transports.py`` produced
figures or was reported as not installed, so the harness cannot silently rot.
``bench/bench_blender.py --quick`` likewise prints every row, or says why
Blender cannot run here (then the test is skipped with that reason).
``bench/bench_buffers.py --quick`` prints every column (GB/s and ratios) for
each size, both round-trip rows and its targets.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.perf, pytest.mark.slow, pytest.mark.subprocess]

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
FIGURES = re.compile(r"\s+\d+\.\d\s+\d+\.\d\s+(\d+|nan)\s+[\d,]+\s")  # p50 p99 cpu msg/s


def load_transports() -> list[object]:
    spec = importlib.util.spec_from_file_location(
        "bench_transports", os.path.join(BENCH, "bench_transports.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return list(module.TRANSPORTS)


def test_every_transport_row_runs_in_quick_mode() -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_transports.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for transport in load_transports():
        label, kind = transport.label, transport.kind  # type: ignore[attr-defined]
        (row,) = [line for line in lines if line.startswith(label + " ")]
        if kind in ("peer",) and "not installed" in row:
            continue  # the bench extra is optional
        assert FIGURES.search(row[len(label) :]), row
    assert any(line.startswith("targets") for line in lines), proc.stdout


BLENDER_ROWS = ("timer poll 0.0", "blender-mcp style", "poll + wake", "host, wake", "host, no wake")
BLENDER_FIGURES = re.compile(r"(\s+\d+\.\d+){8}")  # b2b p50 p99 x x, random p50 p99 x x


def test_blender_bench_runs_in_quick_mode_or_says_why_not() -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_blender.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if proc.stdout.startswith("skipped: "):
        pytest.skip(f"bench_blender.py {proc.stdout.strip()}")
    lines = proc.stdout.splitlines()
    for label in BLENDER_ROWS:
        (row,) = [line for line in lines if line.startswith(label + " ")]
        assert BLENDER_FIGURES.match(row[len(label) :]), row
    for needed in ("16 ms frame timer", "during 1,000 pipelined", "idle CPU", "targets: "):
        assert any(needed in line for line in lines), (needed, proc.stdout)


BUFFER_COLUMNS = 9  # GB/s: shm, shm 0-copy, base64, raw socket, memcpy; then 4 ratios


def test_buffer_bench_reports_every_column_in_quick_mode() -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_buffers.py"), "--quick", "--sizes", "4K,64K"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for size in ("4 KiB", "64 KiB"):
        (row,) = [line for line in lines if line.strip().startswith(size + " ")]
        figures = row.split()[2:]
        assert len(figures) == BUFFER_COLUMNS, row
        assert all(re.fullmatch(r"\d+\.\d+x?", figure) for figure in figures), row
    for needed in ("shm offered ", "shm not offered ", "targets (issue 15):"):
        assert any(line.strip().startswith(needed) for line in lines), (needed, proc.stdout)
