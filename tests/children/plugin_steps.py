"""Child process: a ``ProcessPlugin`` script.

Usage: python plugin_steps.py STEPS [BEHAVIOUR]

Reports STEPS ``progress`` events, then, by BEHAVIOUR:

- (none): sets the result ``{"steps": STEPS, "args": argv}`` and exits 0.
- ``fail``: raises ``RuntimeError("bake failed at step STEPS")`` (exit code 1).
- ``wait-for-cancel``: waits for the cancel, reports a ``cancel.heard`` event, exits 0.
- ``ignore-cancel``: never looks at the cancel; sleeps until terminated.
"""

from __future__ import annotations

import sys
import threading

from aurora_dcc.process.plugin import plugin_context


def main() -> int:
    steps = int(sys.argv[1])
    behaviour = sys.argv[2] if len(sys.argv) > 2 else ""
    with plugin_context() as plugin:
        for step in range(1, steps + 1):
            plugin.progress(step, steps, f"step {step}")
        if behaviour == "fail":
            raise RuntimeError(f"bake failed at step {steps}")
        if behaviour == "wait-for-cancel":
            if plugin.cancelled.wait(60.0):
                plugin.emit("cancel.heard")
            return 0
        if behaviour == "ignore-cancel":
            threading.Event().wait(120.0)
        plugin.set_result({"steps": steps, "args": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
