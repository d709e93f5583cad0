"""Child process: a backend that fails before it connects (exit code 7, a reason on stderr)."""

from __future__ import annotations

import sys

sys.stderr.write("backend-exit-early: fatal: config file missing\n")
sys.exit(7)
