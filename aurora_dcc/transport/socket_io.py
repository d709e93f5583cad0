"""Byte I/O of the pure-Python socket channel: open a stream, read chunks, socket options.

Everything here is about one connected stream (a Unix socket, or a Windows
named pipe through :mod:`aurora_dcc.transport.win_pipe`); the protocol and the
threads are elsewhere (:mod:`aurora_dcc.transport.socket_channel`).

Usage::

    stream = open_stream("/tmp/auroraview_4711.sock", timeout=5.0)
    read = chunk_reader(stream)
    data = read(1.0, 0.0)        # a chunk, b"" at EOF, None if nothing came within 1 s
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
from typing import Callable, Optional, Protocol

from ..errors import ChannelTimeout, Disconnected
from .address import check_server_uid, is_windows

__all__ = [
    "RECV_CHUNK",
    "SEND_FLAGS",
    "Stream",
    "chunk_reader",
    "may_poll",
    "open_stream",
    "set_send_timeout",
]

log = logging.getLogger(__name__)

RECV_CHUNK = 256 * 1024
"""Bytes asked of each ``recv``: many frames per read at high rates."""

# Linux: never raise SIGPIPE on a write to a dead peer (a DCC's embedded Python
# may not ignore SIGPIPE the way python.exe does). macOS has SO_NOSIGPIPE instead.
SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)
_SO_NOSIGPIPE = 0x1022
_perf = time.perf_counter


class Stream(Protocol):
    """What a channel needs of its connection: a ``socket.socket`` or a pipe pair.

    Usage::

        stream: Stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = LocalSocketChannel(stream, "name", server=False)
    """

    def recv(self, bufsize: int) -> bytes: ...

    def sendall(self, data: bytes, flags: int = ..., /) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...


def open_stream(address: str, timeout: float, name: Optional[str] = None) -> Stream:
    """A connected stream to ``address``, served by this user.

    Raises ``Disconnected`` if nobody listens there; ``ChannelTimeout`` if the
    server's backlog stayed full (it listens but does not accept) for ``timeout``
    seconds -- the connect is retried until then; ``UntrustedServer`` if another
    user's process serves it (nothing is sent to it).
    """
    if is_windows():
        from . import win_pipe

        return win_pipe.connect(address, timeout)
    label = address if name is None else name
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(address)
            break
        except BlockingIOError:  # EAGAIN: the backlog is full; the server may catch up
            sock.close()
            left = deadline - time.monotonic()
            if left <= 0.0:
                raise ChannelTimeout(
                    f"the server at {address!r} accepted no connection within {timeout} s "
                    "(its backlog stayed full)"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as exc:
            sock.close()
            raise Disconnected(f"no server listens at {address!r} ({exc})") from exc
        except OSError:
            sock.close()
            raise
    try:
        check_server_uid(sock, label)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocked ``send`` give up after ``seconds`` while ``recv`` still blocks freely."""
    if is_windows():
        return
    try:
        _set_timeval(sock, socket.SO_SNDTIMEO, seconds)
        if sys.platform == "darwin":
            sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
    except OSError as exc:  # pragma: no cover - exotic platforms
        log.debug("cannot set a send timeout: %s", exc)


def chunk_reader(stream: Stream) -> Callable[[Optional[float], float], Optional[bytes]]:
    """``read(wait, spin)``: the next chunk from ``stream`` (``b""`` at EOF), or ``None``
    if nothing arrived within ``wait`` seconds (``None``: wait for data or EOF; only a
    socket can be given a ``wait``, on Linux and macOS). A socket is polled for up to
    ``spin`` seconds of the wait before the read sleeps (see ``READ_SPIN``)."""
    if not isinstance(stream, socket.socket):
        recv = stream.recv
        return lambda _wait, _spin: recv(RECV_CHUNK)
    # One buffer for every read: a fresh 256 KiB per recv costs more than reading a
    # small frame. Only the holder of the read turn reads, so it is never shared.
    buffer = bytearray(RECV_CHUNK)
    view = memoryview(buffer)
    recv_into = stream.recv_into
    # A timed read is one system call: SO_RCVTIMEO bounds the blocked recv. Setting
    # it is a system call too, so a limit between half of ``wait`` and ``wait`` is
    # kept (a read that gives up early is made again), and a new one is set a little
    # under ``wait``, so the next, slightly shorter, wait with the same timeout keeps it.
    limit = [0.0]  # 0: no limit, the socket's default

    def read(wait: Optional[float], spin: float) -> Optional[bytes]:
        if spin and wait != 0.0:
            end = _perf() + (spin if wait is None else min(spin, wait))
            while True:
                try:
                    return view[: recv_into(buffer, 0, _DONT_WAIT)].tobytes()
                except BlockingIOError:
                    if _perf() >= end:
                        break
            if wait is not None:
                wait -= spin
                if wait <= 0.0:
                    return None
        try:
            if wait == 0.0:
                size = recv_into(buffer, 0, _DONT_WAIT)
            else:
                if wait is None:
                    wanted = 0.0 if limit[0] else None  # no limit: clear one that is set
                elif not wait / 2 <= limit[0] <= wait:
                    wanted = max(wait * 0.9, 0.000_001)  # (0 would mean no limit)
                else:
                    wanted = None  # the limit set is close enough
                if wanted is not None:
                    _set_timeval(stream, socket.SO_RCVTIMEO, wanted)
                    limit[0] = wanted
                size = recv_into(buffer)
        except BlockingIOError:  # nothing came: MSG_DONTWAIT, or SO_RCVTIMEO expired
            return None
        return view[:size].tobytes()

    return read


def may_poll(stream: Stream) -> bool:
    """Whether ``stream`` may be polled by a reading caller: a Unix socket whose peer
    is another process, on a machine with more than one core (Linux: ``SO_PEERCRED``)."""
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    if not (_DONT_WAIT and peer_credentials and isinstance(stream, socket.socket)):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
        credentials = stream.getsockopt(socket.SOL_SOCKET, peer_credentials, 12)
        peer_pid = struct.unpack("3i", credentials)[0]  # pid, uid, gid
    except (OSError, AttributeError, struct.error):
        return False
    return cores > 1 and peer_pid not in (0, os.getpid())


def _set_timeval(sock: socket.socket, option: int, seconds: float) -> None:
    """Set ``SO_SNDTIMEO`` or ``SO_RCVTIMEO`` (0: none)."""
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, option, timeval)
