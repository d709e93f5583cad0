"""A subprocess plugin: heavy work off the DCC's process, progress streamed back.

The DCC side runs it with ``ProcessPlugin("examples/plugin_cache.py", ["--frames", "20"])``.
It reports progress per frame, stops early when cancelled, and returns a result.
"""

from __future__ import annotations

import argparse
import time

from aurora_dcc.process.plugin import plugin_context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seconds-per-frame", type=float, default=0.002)
    args = parser.parse_args()
    with plugin_context() as plugin:
        done = 0
        for frame in range(1, args.frames + 1):
            if plugin.cancelled.is_set():
                break
            time.sleep(args.seconds_per_frame)  # stands in for simulating one frame
            done = frame
            plugin.progress(frame, args.frames, f"frame {frame}")
        plugin.set_result({"frames_cached": done})


if __name__ == "__main__":
    main()
