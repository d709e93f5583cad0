"""The write half of ``LocalSocketChannel``: one write at a time, and ``batch()``.

Any thread may send; writes go out under ``_write_lock``, straight from the
sending thread. Inside a thread's ``batch()`` its sends are held and written
together (one system call for many frames).

A client's writes block (up to ``send_timeout``): the peer's reading paces the
sender. A server connection (``max_send_buffer`` given) never blocks while it
holds ``_write_lock``, so a client that stops reading cannot stall a broadcast,
the thread calling ``emit`` or the other clients: a write goes to the socket
without waiting, and what the OS does not take joins the connection's
*backlog*, which a flusher thread (started only while there is a backlog)
writes as the peer reads. A broadcast that finds the backlog over
``max_send_buffer`` bytes drops the client (logged; no ``bye``: the stream
may stop in the middle of a frame). A direct send (a reply) instead waits,
lock released, until the backlog is back under the bound, up to
``send_timeout`` (``SendFailed``): the sender is paced as on a client. This is
simpler than a shared writer thread or an event loop, and costs one length
check per write while the peer keeps up.

Usage (what ``LocalSocketChannel`` inherits)::

    with channel.batch():
        for i in range(100):
            channel.emit("tick", i)      # one write at the block's end
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Callable, Optional, cast

from ..errors import Disconnected, IpcChannelError, SendFailed
from .socket_io import SEND_FLAGS, Stream, set_send_timeout
from .stream import StreamChannel

__all__ = ["SocketWriting"]

log = logging.getLogger(__name__)

_BATCH_BYTES = 32 * 1024
"""Inside ``batch()``, held sends are written once they reach this many bytes."""
_PAUSE_SECONDS = 0.002
"""In a ``batch(write_after_pause=True)``, a send this long after the previous one is written."""
DEFAULT_MAX_SEND_BUFFER = 8 * 1024 * 1024
"""A server connection's bound on bytes sent but not yet taken by the OS (the backlog)."""
_NO_WAIT = SEND_FLAGS | getattr(socket, "MSG_DONTWAIT", 0)


class SocketWriting(StreamChannel):
    """A :class:`StreamChannel` that writes to a :class:`Stream` from the sending thread.

    ``send_timeout``: a write the peer does not take within it fails with
    ``SendFailed`` (the stream is then closed: part of a frame may be out).
    ``max_send_buffer`` (a server connection's): write without blocking and keep
    at most this many bytes the OS did not take (see the module docstring;
    ``None``: blocking writes). ``on_listed`` (a server's): called under the
    write lock just before the ``ready`` goes out. A subclass implements
    ``_close_stream``.

    Usage::

        channel.send(IpcMessage.event_message("tick"))   # a write under _write_lock
    """

    def __init__(
        self,
        stream: Stream,
        name: str,
        *,
        send_timeout: Optional[float] = 60.0,
        max_send_buffer: Optional[int] = None,
        on_listed: Optional[Callable[[Any], None]] = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self._stream = stream
        self._on_listed = on_listed
        self._write_lock = threading.Lock()
        self._send_timeout = send_timeout
        # Non-blocking writes need a socket to poll (not a Windows pipe).
        sock = stream if isinstance(stream, socket.socket) else None
        queued = sock is not None and _NO_WAIT != SEND_FLAGS and hasattr(select, "poll")
        self._max_send_buffer = max_send_buffer if queued else None
        self._socket = cast(socket.socket, sock)  # used only when _max_send_buffer is set
        self._backlog = bytearray()  # bytes the OS has not taken yet (server connections)
        self._drained = threading.Condition(self._write_lock)  # the backlog shrank or ended
        self._flusher: Optional[threading.Thread] = None
        self._broadcast_batch = False  # this batch() holds a server's broadcasts
        self._batch_lock = threading.Lock()
        self._batching: Optional[int] = None  # the thread inside batch(), whose writes are held
        # A bytearray, not a list of frames: each frame is freed as soon as it is copied
        # (freeing hundreds at once can make the C allocator return and re-fault memory).
        self._held = bytearray()
        self._held_count = 0
        self._write_after_pause = False  # see batch()
        self._held_sent_at = 0.0  # when the batch last took a frame (write_after_pause)
        if send_timeout is not None and isinstance(stream, socket.socket):
            set_send_timeout(stream, send_timeout)

    @abstractmethod
    def _close_stream(self) -> None:
        """Stop the connection after a failed write (never called with ``_write_lock`` held)."""

    @contextlib.contextmanager
    def batch(
        self, *, skip_if_gone: bool = False, write_after_pause: bool = False
    ) -> Iterator[None]:
        """Hold this thread's sends and write them together (see ``IpcChannel.batch``).

        ``skip_if_gone``: if the connection is gone at the block's end, drop what
        was held instead of raising (a server's broadcast batch).
        ``write_after_pause``: a send that comes ``_PAUSE_SECONDS`` or more after
        the previous one is not part of a burst: it is written at once, with what
        is held (a host's handler emitting progress while it works).
        """
        # One thread batches at a time. Nested blocks, and blocks of other threads
        # meanwhile, hold nothing (never wait: the batching thread may be waiting
        # for one of them).
        if not self._batch_lock.acquire(blocking=False):
            yield
            return
        try:
            self._batching = threading.get_ident()
            self._broadcast_batch = skip_if_gone
            self._write_after_pause = write_after_pause
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

    def _write_unheld(self, frame: bytes) -> None:
        self._write_locked(frame, 1, False)

    def wait_written(self, timeout: float) -> None:
        """Wait, up to ``timeout``, for a ``batch()`` block in progress to write what it
        holds (a reply held by a drain's batch) and for the backlog to be written."""
        deadline = time.monotonic() + timeout
        if self._batch_lock.acquire(timeout=timeout):
            self._batch_lock.release()
        with self._write_lock:
            self._drained.wait_for(
                lambda: not self._backlog or self._closed, max(0.0, deadline - time.monotonic())
            )

    def _write_held(self) -> None:
        held = self._held
        data = bytes(held)
        held.clear()
        count, self._held_count = self._held_count, 0
        if data:
            self._check_open()
            self._write_locked(data, count, not self._broadcast_batch)

    def _write_frames(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` frames), or hold it inside this thread's ``batch()``."""
        if self._batching is not None and self._batching == threading.get_ident():
            held = self._held
            held += data
            self._held_count += count
            if self._write_after_pause:
                now = time.monotonic()
                paused = now - self._held_sent_at >= _PAUSE_SECONDS
                self._held_sent_at = now
                if paused:
                    self._write_held()
                    return
            if len(held) >= _BATCH_BYTES:
                self._write_held()
            return
        self._write_locked(data, count)

    def send_broadcast(self, frame: bytes) -> None:
        """A server's broadcast: never waits for this peer (see the module docstring)."""
        if self._closed:
            raise self._closed_error()
        if self._batching is not None and self._batching == threading.get_ident():
            self._write_frames(frame, 1)
        else:
            self._write_locked(frame, 1, False)

    def _write_locked(self, data: bytes, count: int, paced: bool = True) -> None:
        """Write under the lock; ``paced``: a direct send, which waits while this
        connection's backlog is over the bound (a broadcast drops the peer instead)."""
        try:
            with self._write_lock:
                self._send(data, count)
                backlog = self._backlog
                if backlog and len(backlog) > (self._max_send_buffer or 0):
                    self._over_bound(paced, len(data))
        except IpcChannelError:
            self._close_stream()  # after the lock: closing may end the channel here
            raise

    def _over_bound(self, paced: bool, size: int) -> None:
        """With ``_write_lock`` held: the backlog is over ``max_send_buffer`` after a
        write of ``size`` bytes."""
        bound = self._max_send_buffer or 0
        if not paced and len(self._backlog) - size <= bound:
            return  # one big frame alone is no sign of a peer falling behind
        if paced:
            if self._drained.wait_for(
                lambda: len(self._backlog) <= bound or self._closed, self._send_timeout
            ):
                self._check_open()
                return
            reason = f"the peer read nothing for the send timeout ({self._send_timeout}s)"
            self._stop_writes()
            raise SendFailed(f"channel {self._name!r}: {reason}")
        log.warning(
            "channel %r: dropped: the client fell behind by %d bytes (bound %d)",
            self._name,
            len(self._backlog),
            bound,
        )
        self._stop_writes()
        raise SendFailed(f"channel {self._name!r}: the peer fell behind; dropped")

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
        if self._max_send_buffer is not None:
            backlog = self._backlog
            if backlog:  # behind what is queued; the flusher writes it
                backlog += data
            else:
                try:
                    sent = self._socket.send(data, _NO_WAIT)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._stop_writes()
                    raise Disconnected(f"channel {self._name!r}: the peer is gone ({exc})") from exc
                if sent != len(data):
                    self._queue(memoryview(data)[sent:])
            metrics = self.metrics
            metrics.messages_sent += count
            metrics.bytes_sent += len(data)
            return
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

    def _queue(self, rest: memoryview) -> None:
        """With ``_write_lock`` held: what the OS did not take waits for the flusher."""
        self._backlog += rest
        if self._flusher is None:
            flusher = threading.Thread(
                target=self._flush_backlog, name=f"aurora-flush-{self._name}", daemon=True
            )
            self._flusher = flusher
            flusher.start()

    def _flush_backlog(self) -> None:
        """The flusher thread: write the backlog as the peer reads; it ends when the
        backlog is empty, or drops a peer that read nothing for the send timeout."""
        poller = select.poll()
        try:
            poller.register(self._socket, select.POLLOUT)
            registered = True
        except (ValueError, OSError):  # closed meanwhile
            registered = False
        timeout = self._send_timeout
        wait_ms = None if timeout is None else max(int(timeout * 1000), 1)
        reason = stalled = None
        while True:
            writable = registered and bool(poller.poll(wait_ms))  # or hung up
            with self._write_lock:
                backlog = self._backlog
                if self._closed or not registered:
                    backlog.clear()
                elif not writable:
                    reason = stalled = f"the peer read nothing for the send timeout ({timeout}s)"
                else:
                    try:
                        del backlog[: self._socket.send(backlog, _NO_WAIT)]
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        reason = f"the peer is gone ({exc})"
                if reason is not None:
                    self._stop_writes()
                self._drained.notify_all()
                if backlog:
                    continue
                self._flusher = None
                break
        if reason is not None:
            # Only a stalled peer is news: one that hung up is an ordinary end.
            log.log(
                logging.WARNING if stalled else logging.DEBUG,
                "channel %r: dropped: %s",
                self._name,
                reason,
            )
            self._close_stream()

    def _stop_writes(self) -> None:
        """With ``_write_lock`` held, after a failed write: part of a frame may be on the
        wire, so no later write may follow it (the caller closes the stream after)."""
        self._closed = True
        self._backlog.clear()  # its memory goes back at once
        self._drained.notify_all()
        with contextlib.suppress(OSError):
            self._stream.shutdown(socket.SHUT_RDWR)
