"""``StdioChannel``: the legacy transport, NDJSON over a child process's stdin and stdout.

``AURORAVIEW_IPC_MODE=legacy`` runs a packed backend the old way: the host
writes frames to the child's stdin and reads frames from its stdout. The
frames, the ``hello``/``ready`` session and every protocol rule are the same
as on a local socket, because this is a :class:`LocalSocketChannel` whose
stream is a pair of pipes instead of a socket (:class:`StdioPipes`), and it
uses only the hooks :class:`~aurora_dcc.transport.stream.StreamChannel` documents.

Because stdout *is* the channel in this mode, :meth:`StdioChannel.connect_stdio`
moves the process's own stdout out of the way first: file descriptor 1 (and so
``print()``, C extensions and child processes) then writes to stderr, and
file descriptor 0 reads ``/dev/null``, so nothing else can eat the host's frames.

Usage::

    # host side: the child was started with stdin=PIPE, stdout=PIPE
    channel = StdioChannel.serve_process(proc, "backend", list_handler_names=registry.names)

    # backend side (in the child)
    channel = StdioChannel.connect_stdio(timeout=10.0)
    for line in report: print(line)       # goes to stderr, not into the channel
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import threading
from typing import Any, Callable, Optional

from .local_socket import LocalSocketChannel

__all__ = ["StdioChannel", "StdioPipes"]


class StdioPipes:
    """A :class:`~aurora_dcc.transport.socket_io.Stream` over two pipe descriptors it owns.

    ``recv`` reads ``read_fd``; ``sendall`` writes ``write_fd``. ``shutdown``
    closes the writing end unless a write is in progress (the other side sees
    EOF at once) and wakes a ``recv`` blocked in another thread (through a
    self-pipe; on Windows, where pipes cannot be selected, the read ends at
    EOF); ``close`` releases the rest.

    Usage::

        stream = StdioPipes(os.dup(proc.stdout.fileno()), os.dup(proc.stdin.fileno()))
        stream.sendall(b'{"type":"ping","id":"1"}\\n')
        stream.recv(65536)
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._write_lock = threading.Lock()  # closing must not race a write on the same fd
        self._shut = False
        self._closed = False
        self._selector: Optional[selectors.BaseSelector] = None
        if os.name != "nt":
            self._wake_r, self._wake_w = os.pipe()
            self._selector = selectors.DefaultSelector()
            self._selector.register(read_fd, selectors.EVENT_READ)
            self._selector.register(self._wake_r, selectors.EVENT_READ)

    def recv(self, bufsize: int) -> bytes:
        if self._shut:
            return b""
        if self._selector is not None:
            ready = {key.fd for key, _ in self._selector.select()}
            if self._wake_r in ready:
                return b""
        return os.read(self._read_fd, bufsize)

    def sendall(self, data: bytes, flags: int = 0, /) -> None:
        with self._write_lock:
            if self._shut:
                raise BrokenPipeError("the pipe stream is shut down")
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view) :]

    def shutdown(self, how: int, /) -> None:
        """Stop both directions: EOF to the other side, wake a blocked ``recv``."""
        if self._shut:
            return
        self._shut = True
        if self._write_lock.acquire(blocking=False):  # else close() does it after the write
            try:
                self._close_writer()
            finally:
                self._write_lock.release()
        if self._selector is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _close_writer(self) -> None:
        if self._write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)
            self._write_fd = -1

    def close(self) -> None:
        if self._closed:
            return
        self._shut = self._closed = True
        with self._write_lock:
            self._close_writer()
        fds = [self._read_fd]
        if self._selector is not None:
            self._selector.close()
            fds += [self._wake_r, self._wake_w]
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class StdioChannel(LocalSocketChannel):
    """A :class:`LocalSocketChannel` over pipes; see the module docstring.

    Usage::

        channel = StdioChannel.serve_process(proc, "backend")    # host
        channel = StdioChannel.connect_stdio()                   # child
    """

    @classmethod
    def serve_process(
        cls,
        proc: subprocess.Popen[bytes],
        name: str,
        *,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        peer_name: Optional[str] = None,
        **options: Any,
    ) -> StdioChannel:
        """The server end of a channel to ``proc`` (started with ``stdin=PIPE, stdout=PIPE``).

        Takes over the child's pipes (``proc.stdin``/``proc.stdout`` are closed
        here; the channel owns copies). The session opens when the child's
        ``hello`` arrives; a child that sends requests straight away is served too.
        """
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("the process must be started with stdin=PIPE and stdout=PIPE")
        stream = StdioPipes(os.dup(proc.stdout.fileno()), os.dup(proc.stdin.fileno()))
        proc.stdout.close()
        proc.stdin.close()
        channel = cls(
            stream,
            name,
            server=True,
            list_handler_names=list_handler_names,
            peer_name=peer_name,
            **options,
        )
        channel.start_reader()
        return channel

    @classmethod
    def connect_fds(
        cls, read_fd: int, write_fd: int, name: str, *, timeout: float = 10.0, **options: Any
    ) -> StdioChannel:
        """The client end over ``read_fd``/``write_fd`` (now owned by the channel).

        Sends ``hello`` and waits up to ``timeout`` seconds for the server's
        ``ready``; raises ``ChannelTimeout`` or ``Disconnected`` like
        ``LocalSocketChannel.connect``.
        """
        channel = cls(StdioPipes(read_fd, write_fd), name, server=False, **options)
        channel._handshake(timeout, f"the host of {name!r}")
        return channel

    @classmethod
    def connect_stdio(
        cls, name: str = "stdio", *, timeout: float = 10.0, **options: Any
    ) -> StdioChannel:
        """The client end over this process's own stdin/stdout (a legacy-mode backend).

        Redirects descriptor 1 to stderr and descriptor 0 to ``/dev/null``
        first (see the module docstring), so ``print()`` keeps working.
        """
        read_fd, write_fd = _take_over_stdio()
        return cls.connect_fds(read_fd, write_fd, name, timeout=timeout, **options)


def _take_over_stdio() -> tuple[int, int]:
    """Copies of descriptors 0 and 1 for the channel; 0 then reads /dev/null, 1 writes to stderr."""
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    read_fd, write_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    os.dup2(2, 1)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # print() now lands on stderr: show each line as it comes
        with contextlib.suppress(ValueError, OSError):
            reconfigure(line_buffering=True)
    return read_fd, write_fd
