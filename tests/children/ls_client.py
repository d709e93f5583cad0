"""Child process: a local-socket client that misbehaves, for tests/test_local_socket_faults.py.

``ls_client.py NAME half``: connects with a bare socket, says ``hello``, sends
half a frame, writes ``sent`` on stdout and waits to be killed (or exits when
stdin closes, without finishing the frame).

``ls_client.py NAME stream``: connects with ``LocalSocketChannel`` and streams
``tick`` events in batches until it is killed; writes ``streaming`` on stdout
once the first batch is out.
"""

from __future__ import annotations

import socket
import sys

from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
from aurora_dcc.transport.address import resolve_address
from aurora_dcc.transport.local_socket import LocalSocketChannel


def main() -> int:
    name, mode = sys.argv[1], sys.argv[2]
    if mode == "half":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(resolve_address(name))
        sock.sendall(b'{"type":"hello","data":{"protocol":1}}\n{"type":"event","event":"ha')
        print("sent", flush=True)
        sys.stdin.read()
        return 0
    channel = LocalSocketChannel.connect(name, timeout=10.0)
    batch = [IpcMessage(IpcMessageType.EVENT, {"i": i}, event="tick") for i in range(100)]
    channel.send_many(batch)
    print("streaming", flush=True)
    while True:
        channel.send_many(batch)


if __name__ == "__main__":
    sys.exit(main())
