"""Run every benchmark in ``bench/`` in turn: what ``make bench`` runs.

Each ``bench/bench_*.py`` is imported by path and its ``main()`` called with no
arguments (its defaults), in the order below, then any other ``bench_*.py``
alphabetically. A benchmark that raises or returns non-zero is reported and
the rest still run; the exit status is 1 if any failed.

Usage::

    python bench/run.py                       # all of them
    python bench/run.py transports core       # only bench_transports.py and bench_core.py
"""

from __future__ import annotations

import glob
import importlib.util
import inspect
import os
import sys
import time
import traceback
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["bench_core", "bench_transports", "bench_main_thread", "bench_rpc"]

sys.path.insert(0, os.path.dirname(HERE))


def bench_names() -> list[str]:
    found = {os.path.basename(path)[:-3] for path in glob.glob(os.path.join(HERE, "bench_*.py"))}
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def run_one(name: str) -> bool:
    """Import ``bench/<name>.py`` and run its ``main()``; True if it succeeded."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    main = module.main
    # A main(argv=None) would parse this script's own arguments: give it none.
    status = main([]) if inspect.signature(main).parameters else main()
    return status in (None, 0)


def main(argv: Optional[list[str]] = None) -> int:
    wanted = sys.argv[1:] if argv is None else argv
    names = bench_names()
    if wanted:
        names = [n for n in names if n in wanted or n.removeprefix("bench_") in wanted]
    failed: list[str] = []
    for name in names:
        print(f"\n##### {name} #####", flush=True)
        started = time.monotonic()
        try:
            ok = run_one(name)
        except Exception:
            traceback.print_exc()
            ok = False
        if not ok:
            failed.append(name)
        print(
            f"##### {name}: {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s",
            flush=True,
        )
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
