"""Child process: quit a Qt application while a DccIpcChannel is busy.

Usage: python dcc_quit.py core|gui|late

``core``/``gui`` (a QCoreApplication / QApplication): a flooder thread keeps
sending, a caller thread waits in ``call_in_main_thread``, and the first
message's handler quits the application. ``late``: the channel is made before
any application exists (it queues, refuses calls with a clear error), then the
application is created and ``attach()`` starts delivery.

Prints one JSON line of outcomes, then leaves the interpreter to tear
everything down (channel and application still referenced): the parent checks
the exit code and that stderr holds no Qt warning or traceback.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qtpy import QtCore, QtWidgets

from aurora_dcc import IpcMessage, ShuttingDown
from aurora_dcc.main_thread.channel import DccIpcChannel, call_in_main_thread


def outcome_of(fn: Any) -> str:
    try:
        return repr(fn())
    except Exception as exc:
        return type(exc).__name__


def quit_while_busy(app: Any, result: dict[str, Any]) -> DccIpcChannel:
    channel = DccIpcChannel("quit")
    delivered: list[int] = []

    def on_message(msg: IpcMessage) -> None:
        delivered.append(msg.data["n"])
        if msg.data["n"] == 0:
            # The main thread is busy here, so the call stays queued: then quit.
            caller.start()
            deadline = time.monotonic() + 10.0
            while not channel._calls and time.monotonic() < deadline:
                time.sleep(0.001)  # no public way to see the call queued
            result["call_was_queued"] = bool(channel._calls)
            app.quit()

    channel.on_message(on_message)

    def flood() -> None:
        n = 0
        try:
            while True:
                channel.emit("n", {"n": n})
                n += 1
        except ShuttingDown:
            result["flood_stopped_by"] = "ShuttingDown"
        result["sent"] = n

    def call() -> None:
        started = time.monotonic()
        result["call"] = outcome_of(lambda: channel.call_in_main_thread(lambda: "ran", timeout=30))
        result["call_seconds"] = time.monotonic() - started

    flooder = threading.Thread(target=flood, daemon=True)
    caller = threading.Thread(target=call, daemon=True)
    flooder.start()
    result["exec"] = app.exec()
    caller.join(10.0)
    flooder.join(10.0)
    result["threads_done"] = not caller.is_alive() and not flooder.is_alive()
    result["is_shutdown"] = channel.is_shutdown()
    result["delivered_in_order"] = delivered == list(range(len(delivered)))
    result["delivered"] = len(delivered)
    result["call_after_quit"] = outcome_of(lambda: channel.call_in_main_thread(lambda: 1))
    return channel


def attach_late(result: dict[str, Any]) -> tuple[Any, DccIpcChannel]:
    channel = DccIpcChannel("early")
    result["attached_before_app"] = channel.is_attached
    result["attach_before_app"] = outcome_of(channel.attach)
    result["call_before_app"] = outcome_of(lambda: channel.call_in_main_thread(lambda: 1))
    result["module_call_before_app"] = outcome_of(lambda: call_in_main_thread(lambda: 1))
    for n in range(100):
        channel.emit("n", {"n": n})
    app = QtCore.QCoreApplication([])
    channel.attach()
    delivered: list[int] = []

    def on_message(msg: IpcMessage) -> None:
        delivered.append(msg.data["n"])

    channel.on_message(on_message)

    def call() -> None:
        result["call_after_attach"] = outcome_of(
            lambda: channel.call_in_main_thread(lambda: len(delivered), timeout=10)
        )
        result["module_call_after_attach"] = outcome_of(
            lambda: call_in_main_thread(lambda: "main", timeout=10)
        )
        channel.call_in_main_thread(app.quit, timeout=10)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    result["exec"] = app.exec()
    caller.join(10.0)
    result["delivered"] = delivered == list(range(100))
    result["is_shutdown"] = channel.is_shutdown()
    return app, channel


def main() -> int:
    mode = sys.argv[1]
    result: dict[str, Any] = {"mode": mode}
    if mode == "late":
        app, channel = attach_late(result)
    else:
        app = QtWidgets.QApplication([]) if mode == "gui" else QtCore.QCoreApplication([])
        channel = quit_while_busy(app, result)
    print(json.dumps(result), flush=True)
    # app and channel stay referenced until the interpreter tears down
    del app, channel
    return 0


if __name__ == "__main__":
    sys.exit(main())
