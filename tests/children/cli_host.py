"""Child process: a standalone host with handlers that freeze its main thread or raise.

``cli_host.py``: a ``StandaloneHost`` (token-less, listed in the discovery
records) that also serves ``freeze(seconds)`` (blocks the Qt main thread;
prints ``frozen`` on stdout when it starts) and ``boom()`` (raises
``ValueError``). Prints ``client`` for each client that connects and
``ready <channel>`` once it serves. Quits when its stdin closes.
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qtpy import QtCore

from aurora_dcc.hosts.standalone import StandaloneHost


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    host = StandaloneHost(peer_name="clihost-1.0", export_env=False)

    def freeze(seconds: float) -> str:
        say("frozen")
        time.sleep(seconds)  # the main thread: nothing else runs meanwhile
        return "thawed"

    def boom() -> None:
        raise ValueError("the handler broke")

    host.register("freeze", freeze)
    host.register("boom", boom)
    host.rpc.on_peer(lambda peer: say("client"))
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    poll = QtCore.QTimer()
    poll.timeout.connect(lambda: stdin_closed.is_set() and host.app.quit())
    poll.start(50)
    say(f"ready {host.name}")
    host.app.exec()
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
