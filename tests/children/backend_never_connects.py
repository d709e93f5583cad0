"""Child process: a backend that never connects; it waits until it is terminated."""

from __future__ import annotations

import sys
import threading

sys.stderr.write("backend-never-connects: busy with something else\n")
sys.stderr.flush()
threading.Event().wait(120.0)
