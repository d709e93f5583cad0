"""Child process: a packed-mode backend built on ``connect_backend`` (either mode).

Handlers:

- ``add(a, b)``: returns ``a + b``.
- ``spam(lines)``: prints ``lines`` lines to stdout mid-call, then returns ``lines``.
- ``say(text)``: ``print(text)``, without flushing.
- ``read_stdin()``: returns what ``sys.stdin.read()`` gives (``""``: nothing to steal).
- ``progress(count)``: emits ``count`` ``progress`` events, then returns ``count``.
- ``call_host(method, data)``: calls ``method`` back on the host, returns its result.
- ``crash()``: writes a marker to stderr and dies at once (exit code 3), mid-request.

Exits 0 when the host disconnects.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aurora_dcc.process.backend import connect_backend


def main() -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:
        peer = connect_backend(name="backend-basic", executor=pool)

        @peer.handler("add")
        def add(a: int, b: int) -> int:
            return a + b

        @peer.handler("spam")
        def spam(lines: int) -> int:
            for index in range(lines):
                print(f"spam line {index}")
            sys.stdout.flush()
            return lines

        @peer.handler("say")
        def say(text: str) -> bool:
            print(text)  # no flush: in legacy mode stdout goes to stderr, line-buffered
            return True

        @peer.handler("read_stdin")
        def read_stdin() -> str:
            return sys.stdin.read()  # never the host's frames: stdin is /dev/null in every mode

        @peer.handler("progress")
        def progress(count: int) -> int:
            for index in range(count):
                peer.emit("progress", {"done": index + 1, "total": count})
            return count

        @peer.handler("call_host")
        def call_host(method: str, data: Any = None) -> Any:
            return peer.request(method, data, timeout=10.0)

        @peer.handler("crash")
        def crash() -> None:
            sys.stderr.write("backend-basic: crashing on purpose\n")
            sys.stderr.flush()
            os._exit(3)

        print("backend-basic: serving")  # stdout is the user's in every mode
        peer.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
