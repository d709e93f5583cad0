"""Child process: soak the Qt binding with cross-thread wakes and ``processEvents()``.

Usage: python binding_soak.py [WAKES] [PROCESS_EVENTS]

A worker thread sends WAKES messages through a ``DccIpcChannel``, one at a time
(each waits for its handler), so every message is one cross-thread wake
delivered on the main thread; then the main thread calls ``processEvents()``
PROCESS_EVENTS more times. Prints one JSON line: the drift of
``sys.getrefcount(None)`` and ``sys.getrefcount(True)`` over the run, the counts,
and the binding's version. PySide6 6.12.0 (CPython 3.11) drops a reference to
None or True on each delivery and aborts with "Fatal Python error: bool_dealloc"
(or "none_dealloc") long before the end; a sound binding exits 0 with a drift near zero.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qtpy
from qtpy import QtCore

from aurora_dcc import IpcMessage, IpcMessageType
from aurora_dcc.main_thread.channel import DccIpcChannel

_WAIT = QtCore.QEventLoop.AllEvents | QtCore.QEventLoop.WaitForMoreEvents


def soak(app: QtCore.QCoreApplication, channel: DccIpcChannel, wakes: int, pumps: int) -> None:
    handled = [0]
    ack = threading.Semaphore(0)
    failures: list[str] = []

    def on_message(_: IpcMessage) -> None:
        handled[0] += 1
        ack.release()

    unsubscribe = channel.on_message(on_message)
    msg = IpcMessage(IpcMessageType.EVENT, {"n": 1}, event="soak")

    def worker() -> None:
        for _ in range(wakes):
            channel.send(msg)
            if not ack.acquire(timeout=10.0):
                failures.append(f"no delivery after {handled[0]} wakes")
                return

    watchdog = QtCore.QTimer()  # wakes the loop now and then, so a stall is noticed
    watchdog.start(200)
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    while handled[0] < wakes and not failures:
        app.processEvents(_WAIT)
    watchdog.stop()
    thread.join(10.0)
    for _ in range(pumps):
        app.processEvents()
    unsubscribe()
    if failures:
        raise RuntimeError(failures[0])


def main() -> int:
    wakes = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    pumps = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    app = QtCore.QCoreApplication([])
    channel = DccIpcChannel("soak")
    soak(app, channel, 500, 500)  # warm-up: lazily made objects exist before the baseline
    gc.collect()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    soak(app, channel, wakes, pumps)
    gc.collect()
    none_after, true_after = sys.getrefcount(None), sys.getrefcount(True)
    channel.shutdown()
    result = {
        "none_drift": none_after - none_before,
        "true_drift": true_after - true_before,
        "wakes": wakes,
        "process_events": pumps,
        "binding": f"{qtpy.API_NAME} {qtpy.PYSIDE_VERSION or qtpy.PYQT_VERSION}",
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
