"""Windows named pipes behind the socket calls ``local_socket`` uses.

``NamedPipeStream`` has the ``recv``/``sendall``/``shutdown``/``close`` of a
connected socket; ``PipeListener.accept()`` returns one per client;
``connect(address, timeout)`` opens the client end. Overlapped I/O through
the standard library's ``_winapi`` (as ``multiprocessing.connection`` does),
so no third-party package is needed. Only Windows can run this module; it
imports anywhere.

Usage (what ``LocalSocketChannelServer`` does on Windows)::

    listener = PipeListener(r"\\\\.\\pipe\\auroraview_4711")
    stream = listener.accept()           # None once listener.close() was called
    stream.sendall(b'{"type":"ping"}\\n')
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any, Optional

from ..errors import ChannelTimeout, Disconnected
from .address import AddressInUse

__all__ = ["NamedPipeStream", "PipeListener", "connect"]

BUFFER_SIZE = 256 * 1024
"""In and out buffer sizes the pipe is created with."""

_POLL_MS = 200
"""How often a blocked read or accept looks whether it was closed (``_winapi`` has no
portable way to wait on a second event before Python 3.12)."""

_PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
_ERROR_FILE_NOT_FOUND = 2
_ERROR_ACCESS_DENIED = 5
_WAIT_TIMEOUT = 0x102


def _winapi() -> Any:
    return importlib.import_module("_winapi")


class NamedPipeStream:
    """One connected pipe end with the socket calls a channel uses.

    ``recv`` returns ``b""`` at end of stream (the peer closed), like a socket;
    ``shutdown`` makes a blocked ``recv`` return ``b""`` within ``_POLL_MS``.

    Usage::

        stream = connect(r"\\\\.\\pipe\\auroraview_4711", timeout=5.0)
        stream.sendall(b'{"type":"ping","id":"1"}\\n')
        stream.recv(65536)
    """

    def __init__(self, handle: int) -> None:
        self._handle = handle
        self._closed = False
        self._write_lock = threading.Lock()

    def recv(self, bufsize: int) -> bytes:
        w = _winapi()
        if self._closed:
            return b""
        try:
            ov, err = w.ReadFile(self._handle, bufsize, overlapped=True)
        except OSError as exc:
            if getattr(exc, "winerror", None) == w.ERROR_BROKEN_PIPE:
                return b""
            raise
        try:
            if err == w.ERROR_IO_PENDING:
                while w.WaitForMultipleObjects([ov.event], False, _POLL_MS) == _WAIT_TIMEOUT:
                    if self._closed:
                        ov.cancel()
                        break
            nread, err = ov.GetOverlappedResult(True)
        except OSError as exc:
            if getattr(exc, "winerror", None) in (w.ERROR_BROKEN_PIPE, w.ERROR_OPERATION_ABORTED):
                return b""
            raise
        if err in (w.ERROR_BROKEN_PIPE, w.ERROR_OPERATION_ABORTED):
            return b""
        data: bytes = ov.getbuffer()
        return data[:nread]

    def sendall(self, data: bytes, flags: int = 0, /) -> None:
        w = _winapi()
        view = memoryview(data)
        with self._write_lock:
            while view:
                if self._closed:
                    raise BrokenPipeError("the pipe is closed")
                ov, err = w.WriteFile(self._handle, view, overlapped=True)
                written, err = ov.GetOverlappedResult(True)
                if err:
                    raise BrokenPipeError(f"write to the pipe failed (error {err})")
                view = view[written:]

    def shutdown(self, how: int = 2, /) -> None:
        self._closed = True

    def close(self) -> None:
        self._closed = True
        handle, self._handle = self._handle, 0
        if handle:
            _winapi().CloseHandle(handle)


class PipeListener:
    """Creates pipe instances of ``address`` and hands out connected ones.

    The first instance is created with ``FILE_FLAG_FIRST_PIPE_INSTANCE``, so a
    second server on the same name fails with ``AddressInUse``. The pipe's
    default security descriptor gives write access (needed to connect) to its
    owner, SYSTEM and administrators only; remote clients are rejected.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._closed = False
        self._handle = self._new_instance(first=True)

    def _new_instance(self, first: bool = False) -> int:
        w = _winapi()
        flags = w.PIPE_ACCESS_DUPLEX | w.FILE_FLAG_OVERLAPPED
        if first:
            flags |= w.FILE_FLAG_FIRST_PIPE_INSTANCE
        try:
            handle: int = w.CreateNamedPipe(
                self.address,
                flags,
                w.PIPE_WAIT | _PIPE_REJECT_REMOTE_CLIENTS,  # byte type, byte read mode
                w.PIPE_UNLIMITED_INSTANCES,
                BUFFER_SIZE,
                BUFFER_SIZE,
                w.NMPWAIT_WAIT_FOREVER,
                w.NULL,
            )
        except OSError as exc:
            if first and getattr(exc, "winerror", None) == _ERROR_ACCESS_DENIED:
                raise AddressInUse(
                    f"pipe {self.address!r} is already served by a live server"
                ) from exc
            raise
        return handle

    def accept(self) -> Optional[NamedPipeStream]:
        """The next connected client, or ``None`` once ``close()`` was called."""
        w = _winapi()
        while not self._closed:
            handle = self._handle
            ov = w.ConnectNamedPipe(handle, overlapped=True)
            try:
                while w.WaitForMultipleObjects([ov.event], False, _POLL_MS) == _WAIT_TIMEOUT:
                    if self._closed:
                        ov.cancel()
                        break
                _, err = ov.GetOverlappedResult(True)
            except OSError as exc:
                err = getattr(exc, "winerror", -1)
            if self._closed:
                return None
            if err not in (0, w.ERROR_PIPE_CONNECTED):
                continue  # the client gave up before it was accepted; wait again
            self._handle = self._new_instance()
            return NamedPipeStream(handle)
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        time.sleep(_POLL_MS / 1000.0 * 1.5)  # let a blocked accept() see the flag first
        handle, self._handle = self._handle, 0
        if handle:
            _winapi().CloseHandle(handle)


def connect(address: str, timeout: float) -> NamedPipeStream:
    """Open the client end of pipe ``address``; ``Disconnected`` if nobody serves it."""
    w = _winapi()
    deadline = time.monotonic() + timeout
    while True:
        try:
            handle: int = w.CreateFile(
                address,
                w.GENERIC_READ | w.GENERIC_WRITE,
                0,
                w.NULL,
                w.OPEN_EXISTING,
                w.FILE_FLAG_OVERLAPPED,
                w.NULL,
            )
            return NamedPipeStream(handle)
        except OSError as exc:
            code = getattr(exc, "winerror", None)
            if code == _ERROR_FILE_NOT_FOUND:
                raise Disconnected(f"no server listens at {address!r}") from exc
            if code != w.ERROR_PIPE_BUSY:
                raise
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout(f"pipe {address!r} stayed busy for {timeout}s")
        try:
            w.WaitNamedPipe(address, max(1, int(remaining * 1000)))
        except OSError as exc:
            if getattr(exc, "winerror", None) == w.ERROR_SEM_TIMEOUT:
                raise ChannelTimeout(f"pipe {address!r} stayed busy for {timeout}s") from exc
            raise
