"""A packed-mode backend: the Python side of a packed app, started by its host.

The host starts it with ``spawn_backend([sys.executable, "examples/backend.py"])``.
It serves ``mesh.bake``, which calls back into the host's scene (on the host's
main thread), streams ``bake.progress`` events, and prints freely to stdout:
the IPC runs over its own socket, so stdout is the backend's to use.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aurora_dcc.process.backend import connect_backend


def main() -> None:
    # An executor lets a handler make blocking calls back to the host.
    with ThreadPoolExecutor(max_workers=2) as pool:
        peer = connect_backend(name="bake-backend", executor=pool)

        @peer.handler("mesh.bake")
        def bake(pattern: str = "*", steps: int = 5) -> dict[str, object]:
            nodes = peer.request("scene.ls", {"pattern": pattern})  # call back into the host
            print(f"[backend stdout] baking {len(nodes)} node(s): {', '.join(nodes)}", flush=True)
            for step in range(1, steps + 1):
                peer.emit("bake.progress", {"step": step, "of": steps})
            return {"baked": nodes, "steps": steps}

        peer.serve_forever()  # announce handlers, return when the host disconnects


if __name__ == "__main__":
    main()
