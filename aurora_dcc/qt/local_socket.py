"""The Qt side of the local-socket transport: ``QLocalServer``/``QLocalSocket`` on Qt's loop.

A DCC runs a Qt event loop on its main thread; this transport is driven by it
(no threads of its own). It speaks PROTOCOL.md, so the other end may be this
side, the pure-Python ``LocalSocketChannel``, or any client written from the
protocol page. The parts:

* :mod:`~aurora_dcc.qt.local_channel`: ``QtLocalSocketChannel``, one connection
  (reads on ``readyRead``, delivers on the Qt thread, waits without stalling it);
* :mod:`~aurora_dcc.qt.local_server`: ``QtLocalSocketServer``, the listening end;
* :mod:`~aurora_dcc.qt.socket_writer`: how frames reach the socket (direct
  writes, sends held while a handler runs, hand-off from other threads);
* :mod:`~aurora_dcc.qt.event_loop`: waiting on the Qt thread and calling onto it.

Usage (inside a running Qt application)::

    server = QtLocalSocketServer("auroraview_4711", token=token)
    server.on_connection(lambda conn: conn.on_message(handle))   # handle() runs on the Qt thread
    server.emit("selection.changed", {"nodes": ["pCube1"]})      # to every client

    channel = QtLocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
    channel.send(IpcMessage.request("scene.info"))
    channel.receive(timeout=5.0)        # keeps the Qt loop running while it waits

Threads: the Qt objects belong to the thread that created them, which should
run a Qt event loop (normally the main thread; on a thread without one, bytes
are read only while a blocking wait runs there). ``send``, ``emit``, ``close``
and ``receive`` may be called from any thread; from other threads the bytes
are handed to the Qt thread. A blocking wait (``receive``, ``wait_event``,
``accept``, ``connect``) on the Qt thread runs a local event loop, so the reply
it waits for can still be delivered; on any other thread it waits on a
condition.
"""

from __future__ import annotations

from .local_channel import QtLocalSocketChannel
from .local_server import QtLocalSocketServer

__all__ = ["QtLocalSocketChannel", "QtLocalSocketServer"]
