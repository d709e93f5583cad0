"""The write half of ``LocalSocketChannel``: one write at a time, and ``batch()``.

Any thread may send; writes go out under ``_write_lock``, straight from the
sending thread. Inside a thread's ``batch()`` its sends are held and written
together (one system call for many frames).

Usage (what ``LocalSocketChannel`` inherits)::

    with channel.batch():
        for i in range(100):
            channel.emit("tick", i)      # one write at the block's end
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ..errors import Disconnected, IpcChannelError, SendFailed
from .socket_io import SEND_FLAGS, Stream, set_send_timeout
from .stream import StreamChannel

__all__ = ["SocketWriting"]

log = logging.getLogger(__name__)

_BATCH_BYTES = 32 * 1024
"""Inside ``batch()``, held sends are written once they reach this many bytes."""


class SocketWriting(StreamChannel):
    """A :class:`StreamChannel` that writes to a :class:`Stream` from the sending thread.

    ``send_timeout``: a write the peer does not take within it fails with
    ``SendFailed`` (the stream is then closed: part of a frame may be out).
    ``on_listed`` (a server's): called under the write lock just before the
    ``ready`` goes out. A subclass implements ``_close_stream``.

    Usage::

        channel.send(IpcMessage.event_message("tick"))   # a write under _write_lock
    """

    def __init__(
        self,
        stream: Stream,
        name: str,
        *,
        send_timeout: Optional[float] = 60.0,
        on_listed: Optional[Callable[[Any], None]] = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self._stream = stream
        self._on_listed = on_listed
        self._write_lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._batching: Optional[int] = None  # the thread inside batch(), whose writes are held
        # A bytearray, not a list of frames: each frame is freed as soon as it is copied
        # (freeing hundreds at once can make the C allocator return and re-fault memory).
        self._held = bytearray()
        self._held_count = 0
        if send_timeout is not None and isinstance(stream, socket.socket):
            set_send_timeout(stream, send_timeout)

    @abstractmethod
    def _close_stream(self) -> None:
        """Stop the connection after a failed write (never called with ``_write_lock`` held)."""

    @contextlib.contextmanager
    def batch(self, *, skip_if_gone: bool = False) -> Iterator[None]:
        """Hold this thread's sends and write them together (see ``IpcChannel.batch``).

        ``skip_if_gone``: if the connection is gone at the block's end, drop what
        was held instead of raising (a server's broadcast batch).
        """
        # One thread batches at a time. Nested blocks, and blocks of other threads
        # meanwhile, hold nothing (never wait: the batching thread may be waiting
        # for one of them).
        if not self._batch_lock.acquire(blocking=False):
            yield
            return
        try:
            self._batching = threading.get_ident()
            try:
                yield
            finally:
                self._batching = None
                try:
                    self._write_held()
                except IpcChannelError as exc:
                    if not skip_if_gone:
                        raise
                    log.debug("channel %r: batch not sent: %s", self._name, exc)
        finally:
            self._batch_lock.release()

    def _write_held(self) -> None:
        held = self._held
        data = bytes(held)
        held.clear()
        count, self._held_count = self._held_count, 0
        if data:
            self._check_open()
            self._write_locked(data, count)

    def _write_frames(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` frames), or hold it inside this thread's ``batch()``."""
        if self._batching is not None and self._batching == threading.get_ident():
            held = self._held
            held += data
            self._held_count += count
            if len(held) >= _BATCH_BYTES:
                self._write_held()
            return
        self._write_locked(data, count)

    def _write_locked(self, data: bytes, count: int) -> None:
        try:
            with self._write_lock:
                self._send(data, count)
        except IpcChannelError:
            self._close_stream()  # after the lock: closing may end the channel here
            raise

    def _session_ready_to_write(self) -> None:
        try:
            with self._write_lock:
                # A server lists the connection for its broadcasts before the ready
                # goes out, and a broadcast to it waits for this lock: a client whose
                # connect() returned gets every later broadcast, and the ready first.
                if self._on_listed is not None:
                    self._on_listed(self)
                output = self._session.take_output()
                if output:
                    self._send(output, output.count(b"\n"))
        except IpcChannelError:
            self._close_stream()
            raise

    def _send(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` frames) with ``_write_lock`` held."""
        try:
            self._stream.sendall(data, SEND_FLAGS)
        except (BlockingIOError, socket.timeout) as exc:
            self._stop_writes()
            raise SendFailed(
                f"channel {self._name!r}: the peer read nothing for the send timeout"
            ) from exc
        except OSError as exc:
            self._stop_writes()
            raise Disconnected(f"channel {self._name!r}: the peer is gone ({exc})") from exc
        metrics = self.metrics
        metrics.messages_sent += count
        metrics.bytes_sent += len(data)

    def _stop_writes(self) -> None:
        """With ``_write_lock`` held, after a failed write: part of a frame may be on the
        wire, so no later write may follow it (the caller closes the stream after)."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._stream.shutdown(socket.SHUT_RDWR)
