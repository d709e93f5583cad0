"""Child process: a host that spawns ``backend_basic.py`` and then just waits.

Usage: python host_spawns_backend.py MODE KILL_WITH_HOST(0|1)

Prints ``backend pid <pid>`` on stdout once it is ready, then waits for
stdin to close (the test SIGKILLs it instead).
"""

from __future__ import annotations

import os
import sys

from aurora_dcc.process.backend import spawn_backend


def main() -> int:
    backend_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_basic.py")
    backend = spawn_backend(
        [sys.executable, backend_script],
        mode=sys.argv[1],
        kill_with_host=sys.argv[2] == "1",
    )
    sys.stdout.write(f"backend pid {backend.pid}\n")
    sys.stdout.flush()
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
