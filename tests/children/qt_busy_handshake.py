"""A Qt server whose main thread is busy while a client sends its ``hello`` on time.

Run with ``QT_NO_GLIB=1`` (Qt's own Unix event dispatcher, like the macOS and
Windows ones: after a blocked stretch it may fire an overdue timer before it
reads the sockets). The server's handshake timeout is 1 s. A client is
accepted, then sends ``hello`` 0.3 s into a stretch of 1.6 s in which the
main thread is busy: ``handler`` (a request handler sleeping) or ``exclude``
(a progress loop running ``processEvents(ExcludeSocketNotifiers)``). Prints
one JSON line: whether the client got its ``ready`` and whether the server
closed it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent.parent))  # PYTHONPATH first

from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.qt.compat import QtCore
from aurora_dcc.qt.local_socket import QtLocalSocketServer

HELLO = b'{"type":"hello","data":{"protocol":1,"peer":"on-time"}}\n'
BUSY = 1.6
ALL = QtCore.QEventLoop.ProcessEventsFlag.AllEvents


def spin(seconds: float, flags: object = ALL) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QtCore.QCoreApplication.processEvents(flags, 10)


def main(variant: str) -> None:
    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    server = QtLocalSocketServer(f"busyhs_{os.getpid()}", handshake_timeout=1.0)

    def on_connection(conn: object) -> None:
        def on_message(msg: IpcMessage) -> None:
            if msg.type is IpcMessageType.REQUEST:
                time.sleep(BUSY)  # the main thread is busy in a handler
                conn.send(IpcMessage.response(msg.id, {}))  # type: ignore[attr-defined]

        conn.on_message(on_message)  # type: ignore[attr-defined]

    server.on_connection(on_connection)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.connect(server.address)
    other.sendall(HELLO)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(server.address)
    spin(0.3)  # both accepted: the client's handshake timer runs
    threading.Timer(0.3, lambda: client.sendall(HELLO)).start()  # on time, while busy
    if variant == "handler":
        other.sendall(b'{"type":"request","id":"1","method":"work"}\n')
        spin(0.2)
    else:
        spin(BUSY, QtCore.QEventLoop.ProcessEventsFlag.ExcludeSocketNotifiers)
    spin(2.0)
    client.setblocking(False)
    received, closed = b"", False
    try:
        while True:
            chunk = client.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except BlockingIOError:
        pass
    except OSError:
        closed = True
    print(json.dumps({"ready": b'"ready"' in received, "closed": closed}), flush=True)
    server.close()
    app.processEvents()


if __name__ == "__main__":
    main(sys.argv[1])
