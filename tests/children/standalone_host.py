"""A ``StandaloneHost`` serving a channel until its stdin closes.

Usage: ``standalone_host.py <channel>``. Prints ``ready`` once clients may
connect; closing stdin quits the Qt loop and closes the host (exit 0).
"""

from __future__ import annotations

import os
import sys
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from aurora_dcc.hosts.standalone import StandaloneHost
from aurora_dcc.qt.compat import QtCore

host = StandaloneHost(sys.argv[1], export_env=False)
stdin_closed = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
timer = QtCore.QTimer()
timer.timeout.connect(lambda: stdin_closed.is_set() and host.app.quit())
timer.start(20)
print("ready", flush=True)
host.app.exec()
host.close()
