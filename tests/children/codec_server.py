"""Child process: a server of either kind with a chosen JSON codec, until stdin closes.

Usage: python codec_server.py KIND NAME CODEC

KIND is ``python`` (``LocalSocketChannelServer``) or ``qt``
(``QtLocalSocketServer`` on a ``QCoreApplication``); CODEC ``json`` hides
orjson so the codec falls back to the standard library, ``default`` leaves
it. Prints ``listening <codec backend>`` once clients may connect; closes
its server and exits when its stdin closes (``support.stop_child``).
"""

from __future__ import annotations

import os
import sys
import threading


def main() -> int:
    kind, name, codec_choice = sys.argv[1:4]
    if codec_choice == "json":
        sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson now fails
    from aurora_dcc.protocol import codec

    if kind == "python":
        from aurora_dcc.transport.local_socket import LocalSocketChannelServer

        server = LocalSocketChannelServer(name)
        print("listening", codec.BACKEND, flush=True)
        sys.stdin.read()
        server.close()
        return 0
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from aurora_dcc.qt.compat import QtCore
    from aurora_dcc.qt.local_server import QtLocalSocketServer

    app = QtCore.QCoreApplication(sys.argv[:1])
    qt_server = QtLocalSocketServer(name)

    def quit_when_stdin_closes() -> None:
        sys.stdin.read()
        QtCore.QMetaObject.invokeMethod(app, "quit", QtCore.Qt.QueuedConnection)

    threading.Thread(target=quit_when_stdin_closes, daemon=True).start()
    print("listening", codec.BACKEND, flush=True)
    app.exec_() if hasattr(app, "exec_") else app.exec()
    qt_server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
