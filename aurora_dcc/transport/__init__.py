"""Transports without Qt: bytes between processes over local sockets, named pipes, stdio.

- :mod:`.stream`: ``StreamChannel`` and ``StreamServer``, what every stream
  transport shares (the Qt one too): the protocol session, the handshake,
  sending, in-order delivery, server bookkeeping; :mod:`.inbox`: ``Inbox``.
- :mod:`.connection`: ``StreamSession``, one connection's protocol rules (no I/O).
- :mod:`.local_socket`: the pure-Python socket channel and server
  (``LocalSocketChannel``, ``LocalSocketChannelServer``), built from
  :mod:`.socket_channel`, :mod:`.socket_read` (the reader thread),
  :mod:`.read_turn` (who reads now: ``ReadState``), :mod:`.socket_write`,
  :mod:`.socket_io` (byte I/O), :mod:`.socket_server` and :mod:`.listener`.
- :mod:`.stdio`: ``StdioChannel``, the same channel over a child's stdin/stdout.
- :mod:`.win_pipe`: Windows named pipes behind the socket calls.
- :mod:`.address` (channel names to socket paths, claiming a name, the server's uid),
  :mod:`.retry` (``RetryPolicy``).

docs/design/threading.md explains who reads, who waits, and the lock order.
"""

from __future__ import annotations

from .address import AddressInUse, InvalidChannelName, UntrustedServer
from .local_socket import LocalSocketChannel, LocalSocketChannelServer
from .retry import RetryPolicy
from .stdio import StdioChannel
from .stream import StreamChannel
from .stream_server import StreamServer

__all__ = [
    "AddressInUse",
    "InvalidChannelName",
    "LocalSocketChannel",
    "LocalSocketChannelServer",
    "RetryPolicy",
    "StdioChannel",
    "StreamChannel",
    "StreamServer",
    "UntrustedServer",
]
