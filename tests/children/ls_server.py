"""Child process: a ``LocalSocketChannelServer`` that answers requests, until it is killed.

``ls_server.py NAME``: every request is answered with its own ``data``; a
request for ``block`` is never answered. Clients find it with ``connect(retry=...)``.
"""

from __future__ import annotations

import sys
import threading

from aurora_dcc.channel import IpcChannel
from aurora_dcc.local_socket import LocalSocketChannelServer
from aurora_dcc.message import IpcMessage, IpcMessageType


def serve(conn: IpcChannel) -> None:
    def answer(msg: IpcMessage) -> None:
        if msg.type is IpcMessageType.REQUEST and msg.method != "block":
            conn.send(IpcMessage.response(msg.id, msg.data))

    conn.on_message(answer)


def main() -> int:
    server = LocalSocketChannelServer(sys.argv[1])
    server.on_connection(serve)
    threading.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
