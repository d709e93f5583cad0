"""Child process: the backend of ``bench/bench_packed.py``.

Usage: ``python packed_echo.py packed`` (a ``connect_backend`` backend serving
``echo``, in whichever mode its host chose) or ``python packed_echo.py raw``
(the floor: a bare NDJSON loop on stdin/stdout that answers every request line
with a response carrying its ``id`` and ``data``, and no aurora_dcc at all).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def raw() -> None:
    out = sys.stdout
    for line in sys.stdin:
        msg = json.loads(line)
        out.write(json.dumps({"type": "response", "id": msg["id"], "data": msg["data"]}) + "\n")
        out.flush()


def packed() -> None:
    from aurora_dcc.process.backend import connect_backend

    peer = connect_backend(name="bench-echo")

    @peer.handler("echo")
    def echo(value: Any) -> Any:
        return value

    peer.serve_forever()


if __name__ == "__main__":
    raw() if sys.argv[1] == "raw" else packed()
