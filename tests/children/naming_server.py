"""Child process: starts and stops servers on command, for tests/test_naming.py.

``naming_server.py KIND`` (KIND: ``qt`` or ``python``) reads commands on stdin:
``start NAME`` answers ``won NAME`` or ``lost NAME <exception type>``;
``stop NAME`` closes that server and answers ``stopped NAME``. It exits when
stdin closes. ``naming_server.py KIND serve NAME`` starts one server, answers
``listening`` and serves (the Qt one from a running event loop) until stdin closes.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def make_server(kind: str, name: str) -> Any:
    if kind == "qt":
        from aurora_dcc.qt.local_socket import QtLocalSocketServer

        return QtLocalSocketServer(name)
    from aurora_dcc.transport.local_socket import LocalSocketChannelServer

    return LocalSocketChannelServer(name)


def race(kind: str) -> int:
    servers: dict[str, Any] = {}
    for line in sys.stdin:
        command, name = line.split()
        if command == "start":
            try:
                servers[name] = make_server(kind, name)
            except Exception as exc:  # the test reads which one
                print(f"lost {name} {type(exc).__name__}", flush=True)
            else:
                print(f"won {name}", flush=True)
        else:
            server = servers.pop(name, None)
            if server is not None:
                server.close()
            print(f"stopped {name}", flush=True)
    for server in servers.values():
        server.close()
    return 0


def serve(kind: str, name: str) -> int:
    server = make_server(kind, name)
    print("listening", flush=True)
    if kind != "qt":
        sys.stdin.read()
        server.close()
        return 0
    from aurora_dcc.qt.compat import QtCore

    app = QtCore.QCoreApplication.instance()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: stop.is_set() and app.quit())
    timer.start(20)
    app.exec() if hasattr(app, "exec") else app.exec_()
    server.close()
    return 0


def main() -> int:
    kind = sys.argv[1]
    if kind == "qt":
        from aurora_dcc.qt.compat import QtCore

        _app = QtCore.QCoreApplication(sys.argv[:1])  # kept alive for the run
    if len(sys.argv) > 2:
        return serve(kind, sys.argv[3])
    return race(kind)


if __name__ == "__main__":
    sys.exit(main())
