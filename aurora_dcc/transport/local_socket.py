"""Local-socket channels in pure Python: ``LocalSocketChannelServer`` and ``LocalSocketChannel``.

The side of PROTOCOL.md for processes without Qt (a packed-mode backend, a
subprocess script, an external tool). Unix domain sockets on Linux and macOS,
named pipes on Windows (:mod:`aurora_dcc.transport.win_pipe`), behind one API. The
protocol rules themselves live in :class:`~aurora_dcc.transport.connection.StreamSession`.
This module gathers the public names; the code is in ``socket_channel``
(the channel, ``READ_SPIN``), ``socket_read`` (the reader thread and the read
turn, ``read_turn``), ``socket_write`` (writes), ``socket_io`` (byte I/O),
``socket_server`` and ``listener`` (the server), on top of ``stream`` (what the
Qt and stdio transports share). docs/design/threading.md explains the threads.

Each channel owns one socket. One thread at a time holds its *read turn*:
it reads a big chunk, feeds the session, writes the replies the protocol
owes (``pong``, ``ready``, error responses) and hands the messages over:
straight to the ``on_message`` handlers when any are registered, else into an
inbox for ``receive()``/``try_receive()``. Who reads:

* a server-side connection (and a channel over pipes) has a daemon reader
  thread for its whole life, so it answers pings and bad frames and notices a
  hang-up even while the application reads nothing;
* a client reads on demand. Without handlers, ``receive()`` reads the socket on
  the calling thread (no hand-off between threads, and a short poll before it
  sleeps, see ``READ_SPIN``: a round trip's fast path);
  a second caller waits for the first one's read, then takes what it queued or
  reads in turn. While handlers are registered a reader thread delivers to
  them; once none is left it stops (within a second, or at once if a read
  brings something: it queues that first). So a client without handlers
  answers a ``ping``, and notices that the server left, only when it reads (or
  a send fails). ``Peer`` registers a handler, so it always has its reader
  thread; but the reader waits for data without holding the read turn, and a
  caller waiting for a reply in ``wait_event`` (``Peer.request``) takes the
  turn and reads for itself: the reply is delivered on the thread that waits
  for it.

Writes (``send``, ``send_many`` for batches) go out under a lock, from
whichever thread calls them.

A handler runs on the thread that read its message (the reader thread, a
``wait_event`` caller, or a ``receive()`` caller when the handler was
registered during its read), so while it runs nothing else is read from that
connection: a handler must not wait for a reply on its own channel (hand such
work to an executor), and a handler that sends much to a peer that is itself
blocked sending to us waits at most ``send_timeout`` (then ``SendFailed`` and
the connection is closed; part of a frame may be out).

Usage::

    with LocalSocketChannelServer("auroraview_4711", token="s3cret") as server:
        client = LocalSocketChannel.connect("auroraview_4711", token="s3cret")
        conn = server.accept(timeout=5.0)
        client.emit("scene.opened", {"path": "shot.ma"})
        conn.receive(timeout=1.0).event          # 'scene.opened'
        server.emit("selection.changed", {})     # to every client
        client.close()                           # conn.receive() -> Disconnected
"""

from __future__ import annotations

from .retry import RetryPolicy
from .socket_channel import LocalSocketChannel
from .socket_io import Stream
from .socket_server import LocalSocketChannelServer

__all__ = ["LocalSocketChannel", "LocalSocketChannelServer", "RetryPolicy", "Stream"]
