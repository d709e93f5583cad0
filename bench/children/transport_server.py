"""Child process: the serving side of one transport in ``bench/bench_transports.py``.

Usage: ``python transport_server.py TRANSPORT ADDRESS``

Every transport answers the same two things over one connection:

* a request (``{"type": "request", "id": ..., "method": "bench.echo", "data": ...}``)
  gets a response carrying the same ``id`` and ``data``;
* a request for method ``bench.stream`` with ``data == {"n": N}`` gets N
  ~100-byte events back, sent as fast as the transport's public API allows.

``data`` may also carry ``"batch": true``: the server then emits inside the
channel's ``batch()`` block (one write per 256 KiB). The raw floor (``raw``) has no JSON: it echoes
bytes, and a chunk starting with ``S`` asks for N 100-byte lines, one write
each. Servers that listen print ``listening`` on stdout once a client may
connect; every child exits when its client hangs up.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from aurora_dcc.protocol import codec as codec

FRAME = 100
"""Bytes of one raw frame (newline included)."""
START_TIMEOUT = 30.0


def event_data(i: int) -> dict[str, Any]:
    """The payload of the i-th streamed event (the whole event is ~100 bytes as JSON)."""
    return {"frame": i, "node": "pCube1", "attr": "translateX", "value": 0.25}


def event_dict(i: int) -> dict[str, Any]:
    return {"type": "event", "event": "bench.tick", "data": event_data(i)}


def listening() -> None:
    sys.stdout.write("listening\n")
    sys.stdout.flush()


# -- baselines ----------------------------------------------------------------


def serve_raw(fd: str) -> None:
    """The floor: bytes echo over an inherited ``socketpair`` end, no framing, no JSON."""
    sock = socket.socket(fileno=int(fd))
    line = b"x" * (FRAME - 1) + b"\n"
    while True:
        data = sock.recv(65536)
        if not data:
            return
        if data[:1] == b"S":
            for _ in range(int(data[1:])):
                sock.sendall(line)  # one write per frame, like a message API without batching
        else:
            sock.sendall(data)


def serve_ndjson(path: str) -> None:
    """A hand-written AF_UNIX NDJSON server with orjson: the least a JSON socket costs."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listening()
    conn, _ = listener.accept()
    listener.close()
    os.unlink(path)
    dumps, loads = codec.dumps, codec.loads
    partial = b""
    while True:
        data = conn.recv(65536)  # 256 KiB would be mmap'd per call (~25 us)
        if not data:
            return
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        out: list[bytes] = []
        for line in lines:
            msg = loads(line)
            if msg.get("method") == "bench.stream":
                stream_batched(conn.sendall, dumps, msg["data"]["n"])
            else:
                out.append(dumps({"type": "response", "id": msg["id"], "data": msg["data"]}))
        if out:
            out.append(b"")
            conn.sendall(b"\n".join(out))


def stream_batched(write: Callable[[bytes], Any], dumps: Callable[[Any], bytes], n: int) -> None:
    batch: list[bytes] = []
    for i in range(n):
        batch.append(dumps(event_dict(i)))
        if len(batch) == 256:
            batch.append(b"")
            write(b"\n".join(batch))
            batch = []
    if batch:
        batch.append(b"")
        write(b"\n".join(batch))


def serve_stdio(_address: str) -> None:
    """The old way: NDJSON on stdin/stdout, a flush per message."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    dumps, loads = codec.dumps, codec.loads
    for line in stdin:
        msg = loads(line)
        if msg.get("method") == "bench.stream":
            for i in range(msg["data"]["n"]):
                stdout.write(dumps(event_dict(i)) + b"\n")
                stdout.flush()  # an event is due when it happens, like print(..., flush=True)
        else:
            reply = {"type": "response", "id": msg["id"], "data": msg["data"]}
            stdout.write(dumps(reply) + b"\n")
        stdout.flush()


def serve_stdio_text(_address: str) -> None:
    """A typical hand-rolled bridge: text-mode pipes, ``json``, ``print(..., flush=True)``."""
    import json

    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("method") == "bench.stream":
            for i in range(msg["data"]["n"]):
                print(json.dumps(event_dict(i)), flush=True)
        else:
            reply = {"type": "response", "id": msg["id"], "data": msg["data"]}
            print(json.dumps(reply), flush=True)


# -- ours -----------------------------------------------------------------------


def serve_channel(conn: Any) -> None:
    """Answer on an aurora_dcc channel from its ``on_message`` handler."""
    from aurora_dcc import IpcMessage

    send, emit = conn.send, conn.emit

    def on_message(msg: IpcMessage) -> None:
        if msg.method == "bench.stream":
            if msg.data.get("batch"):
                with conn.batch():
                    for i in range(msg.data["n"]):
                        emit("bench.tick", event_data(i))
                return
            for i in range(msg.data["n"]):
                emit("bench.tick", event_data(i))
        else:
            send(IpcMessage.response(msg.id, msg.data))

    conn.on_message(on_message)


def serve_stdio_channel(_address: str) -> None:
    """A legacy-mode backend: ``StdioChannel.connect_stdio``, answering from its handler."""
    from aurora_dcc.transport.stdio import StdioChannel

    channel = StdioChannel.connect_stdio(timeout=START_TIMEOUT)
    serve_channel(channel)
    channel.emit("bench.up")  # the host may send from now on
    while channel.is_connected:
        time.sleep(0.2)


def serve_plain(name: str) -> None:
    """``LocalSocketChannelServer``: handlers run on the connection's reader thread."""
    from aurora_dcc.transport.local_socket import LocalSocketChannelServer

    server = LocalSocketChannelServer(name)
    server.on_connection(serve_channel)  # on the reader thread, before the first message
    listening()
    conn = server.accept(timeout=60.0)
    hung_up = threading.Event()
    conn.shutdown_state.on_shutdown(hung_up.set)  # shut down when the connection ends
    hung_up.wait()
    server.close()


def run_qt_server(name: str, on_connection: Callable[[Any], None]) -> None:
    """A ``QtLocalSocketServer`` in this process's own ``QCoreApplication`` loop."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtpy import QtCore

    from aurora_dcc.qt.local_socket import QtLocalSocketServer

    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])

    def opened(conn: Any) -> None:
        conn.shutdown_state.on_shutdown(app.quit)  # runs on the Qt thread
        on_connection(conn)

    server = QtLocalSocketServer(name)
    server.on_connection(opened)
    listening()
    app.exec()
    server.close()


def serve_qt_bare(name: str) -> None:
    """A bare ``QLocalServer`` echo in a Qt loop: what Qt itself costs, none of our code.

    Speaks the raw floor's bytes protocol (echo; ``S<n>`` asks for n 100-byte
    lines, one ``write`` each, which Qt buffers and sends when the loop runs).
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtpy import QtCore, QtNetwork

    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    server = QtNetwork.QLocalServer()
    line = b"x" * (FRAME - 1) + b"\n"
    sockets: list[Any] = []

    def on_new_connection() -> None:
        sock = server.nextPendingConnection()
        sockets.append(sock)
        read_all, write = sock.readAll, sock.write

        def on_ready_read() -> None:
            data = read_all().data()
            if data[:1] == b"S":
                for _ in range(int(data[1:])):
                    write(line)
            else:
                write(data)

        sock.readyRead.connect(on_ready_read)
        sock.disconnected.connect(app.quit)

    server.newConnection.connect(on_new_connection)
    if not server.listen(name):
        raise SystemExit(f"cannot listen on {name!r}: {server.errorString()}")
    listening()
    app.exec()
    server.close()


def serve_qt(name: str) -> None:
    """``QtLocalSocketServer``: handlers on the Qt thread."""
    run_qt_server(name, serve_channel)


def serve_qt_peer(name: str) -> None:
    """``Peer`` (RPC) over ``QtLocalSocketServer``: handlers on the Qt thread."""
    from aurora_dcc import Peer

    peers: list[Peer] = []

    def on_connection(conn: Any) -> None:
        peer = Peer(conn)
        peer.register("bench.echo", lambda **data: data)

        def stream(n: int) -> None:
            for i in range(n):
                peer.emit("bench.tick", event_data(i))

        peer.register("bench.stream", stream)
        peers.append(peer)

    run_qt_server(name, on_connection)


# -- the peers a user would otherwise pick --------------------------------------


def serve_mp(path: str) -> None:
    """``multiprocessing.connection``: pickled dicts, a length prefix per message."""
    from multiprocessing.connection import Listener

    with Listener(path, family="AF_UNIX") as listener:
        listening()
        conn = listener.accept()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg.get("method") == "bench.stream":
            for i in range(msg["data"]["n"]):
                conn.send(event_dict(i))
        else:
            conn.send({"type": "response", "id": msg["id"], "data": msg["data"]})


def serve_zmq(endpoint: str) -> None:
    """pyzmq ``PAIR`` over ``ipc://``, orjson-encoded frames."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.bind(endpoint)
    listening()
    dumps, loads = codec.dumps, codec.loads
    while True:
        msg = loads(sock.recv())
        method = msg.get("method")
        if method == "bench.quit":
            break
        if method == "bench.stream":
            for i in range(msg["data"]["n"]):
                sock.send(dumps(event_dict(i)))
        else:
            sock.send(dumps({"type": "response", "id": msg["id"], "data": msg["data"]}))
    sock.close()
    ctx.term()


def serve_ipckit(name: str) -> None:
    """ipckit 0.1.12 ``LocalSocketStream`` with its ``send_json``/``recv_json``."""
    from ipckit import ipckit

    listener = ipckit.LocalSocketListener.bind(name)
    listening()
    stream = listener.accept()
    while True:
        try:
            msg = stream.recv_json()
        except (OSError, RuntimeError, ValueError):
            return  # the client hung up
        method = msg.get("method")
        if method == "bench.quit":
            return  # ipckit's stream has no close() for the client to hang up with
        if method == "bench.stream":
            for i in range(msg["data"]["n"]):
                stream.send_json(event_dict(i))
        else:
            stream.send_json({"type": "response", "id": msg["id"], "data": msg["data"]})


SERVERS: dict[str, Callable[[str], None]] = {
    "raw": serve_raw,
    "ndjson": serve_ndjson,
    "stdio": serve_stdio,
    "stdio-text": serve_stdio_text,
    "stdio-channel": serve_stdio_channel,
    "plain": serve_plain,
    "qt-bare": serve_qt_bare,
    "qt": serve_qt,
    "qt-peer": serve_qt_peer,
    "mp": serve_mp,
    "zmq": serve_zmq,
    "ipckit": serve_ipckit,
}


def exit_with_parent() -> None:
    """Leave when the benchmark dies, even if the transport cannot tell (zmq PAIR)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    os.umask(0o077)
    exit_with_parent()
    SERVERS[sys.argv[1]](sys.argv[2])
