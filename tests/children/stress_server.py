"""Child process: the server side of tests/test_read_turn_stress.py.

Usage: python stress_server.py CHANNEL_NAME

A ``LocalSocketChannelServer``; each connection is served by a ``Peer`` whose
handlers run on a thread pool (a slow one does not hold the others back):

- ``echo(**data)``: returns ``data``.
- ``slow(after, **data)``: returns ``data`` after ``after`` seconds.
- ``fail(code, **data)``: answers the error ``code`` with ``data`` (IpcCallError).
- ``stream(count, burst, pause)``: starts emitting the events ``tick`` with
  ``{"seq": 0}`` .. ``{"seq": count - 1}`` to this connection, ``burst`` at a
  time with ``pause`` seconds between bursts; returns at once.
- ``stream_stop(timeout)``: stops the stream and returns the number of events
  sent (every ``tick`` was written before this reply).

Exits, closing its server (which removes the socket file), when its stdin closes.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aurora_dcc.channel.base import IpcChannel
from aurora_dcc.errors import IpcChannelError
from aurora_dcc.rpc.peer import IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannelServer


def serve(conn: IpcChannel, pool: ThreadPoolExecutor) -> None:
    peer = Peer(conn, name="stress-server", executor=pool)
    sent = [0]
    done = threading.Event()
    done.set()
    stop = threading.Event()

    def emit_ticks(count: int, burst: int, pause: float) -> None:
        try:
            for seq in range(count):
                if stop.is_set():
                    break
                peer.emit("tick", {"seq": seq})
                sent[0] = seq + 1
                if pause and (seq + 1) % burst == 0:
                    time.sleep(pause)
        except IpcChannelError:  # the client went away mid-stream
            pass
        finally:
            done.set()

    @peer.handler("echo")
    def echo(**data: Any) -> dict[str, Any]:
        return data

    @peer.handler("slow")
    def slow(after: float, **data: Any) -> dict[str, Any]:
        time.sleep(after)
        return data

    @peer.handler("fail")
    def fail(code: int, **data: Any) -> None:
        raise IpcCallError(code, "failed on purpose", data)

    @peer.handler("stream")
    def stream(count: int, burst: int, pause: float) -> bool:
        if not done.is_set():
            return False
        done.clear()
        stop.clear()
        sent[0] = 0
        threading.Thread(target=emit_ticks, args=(count, burst, pause), daemon=True).start()
        return True

    @peer.handler("stream_stop")
    def stream_stop(timeout: float) -> int:
        stop.set()
        if not done.wait(timeout):
            raise IpcCallError(-32001, "the stream is still running", {"sent": sent[0]})
        return sent[0]


def main() -> int:
    with ThreadPoolExecutor(max_workers=8) as pool:
        server = LocalSocketChannelServer(sys.argv[1])
        server.on_connection(lambda conn: serve(conn, pool))
        sys.stdin.read()  # until the test closes our stdin (or dies)
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
