"""Child process: a ``LocalSocketChannelServer`` that answers requests, until it is killed.

``ls_server.py NAME``: every request is answered with its own ``data``; a
request for ``block`` is never answered; ``late`` is answered after
``data["after"]`` seconds; ``hang_up`` closes the connection after
``data["after"]`` seconds. Clients find it with ``connect(retry=...)``.
It closes its server and exits when its stdin closes (``support.stop_child``).
"""

from __future__ import annotations

import sys
import threading

from aurora_dcc.channel.base import IpcChannel
from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.transport.local_socket import LocalSocketChannelServer


def serve(conn: IpcChannel) -> None:
    def answer(msg: IpcMessage) -> None:
        if msg.type is not IpcMessageType.REQUEST or msg.method == "block":
            return
        reply = IpcMessage.response(msg.id, msg.data)
        if msg.method == "late":
            threading.Timer(msg.data["after"], conn.send, (reply,)).start()
        elif msg.method == "hang_up":
            threading.Timer(msg.data["after"], conn.close).start()
        else:
            conn.send(reply)

    conn.on_message(answer)


def main() -> int:
    server = LocalSocketChannelServer(sys.argv[1])
    server.on_connection(serve)
    sys.stdin.read()  # until the test closes our stdin (or dies): then remove the socket
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
