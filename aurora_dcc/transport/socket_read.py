"""The read side of ``LocalSocketChannel``: the reader thread, a read turn, the end.

One thread at a time holds the channel's read turn (:mod:`aurora_dcc.transport.read_turn`):
it reads a chunk, feeds the session, writes what the protocol owes and hands
the messages over (to the handlers if any are registered, else to the
inbox). Whoever's read ends the connection ends it (``_end``), once. Callers
that read for themselves are ``LocalSocketChannel``'s part.

Usage (what ``LocalSocketChannel`` inherits)::

    channel.read_state        # ReadState.IDLE: a client without handlers reads on demand
    channel.on_message(print) # starts the reader thread
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Any, Optional

from ..errors import IpcChannelError
from ..protocol.message import IpcMessage
from .read_turn import ENDED, ReadState, ReadTurn
from .socket_io import Stream, chunk_reader
from .socket_write import SocketWriting

__all__ = ["SocketReading"]

log = logging.getLogger(__name__)

_IDLE_CHECK_MS = 1000
"""A client's reader thread, waiting for data, looks this often whether it should stop."""


class SocketReading(SocketWriting):
    """The read turn's holders that are not callers: the reader thread and the end.

    A client socket reads on demand (its reader thread runs only while message
    handlers are registered); a server connection or a pipe has its reader
    thread for good, from ``start_reader()`` on.

    Usage::

        channel.read_state is ReadState.READER_WAITING   # a client with handlers, idle
    """

    def __init__(self, stream: Stream, name: str, *, server: bool, **options: Any) -> None:
        super().__init__(stream, name, server=server, **options)
        self._turn = ReadTurn(self._inbox.wake)
        self._delivering = threading.RLock()  # a handler may register another handler
        self._reader: Optional[threading.Thread] = None
        self._recv = chunk_reader(stream)
        self._reads_on_demand = not server and isinstance(stream, socket.socket)
        # A client's reader thread waits for data without the read turn, so that a
        # wait_event() caller can read its own reply meanwhile.
        self._waits_without_turn = self._reads_on_demand and hasattr(select, "poll")
        self._state.on_shutdown(self._on_shutdown)

    @property
    def read_state(self) -> ReadState:
        """Who reads the stream now (for diagnostics and tests; see ``ReadState``)."""
        return self._turn.state

    def _wait_settled(self, timeout: float) -> bool:
        turn, inbox = self._turn, self._inbox
        deadline = time.monotonic() + timeout
        if not self._reads_on_demand:
            self.start_reader()
        while True:
            with inbox.lock:  # _opened() and the end wake this lock's waiters
                if self._open or turn.state is ENDED:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not (self._reads_on_demand and turn.free):
                    inbox.wait(remaining)  # the reader thread reads
                    continue
                turn.take(by_reader=False)  # nobody else reads before connect() returns
            self._read_turn(remaining)  # what arrives with the ready waits in the inbox

    def _opened(self) -> None:
        if isinstance(self._stream, socket.socket) and self._stream.gettimeout() is not None:
            self._stream.settimeout(None)  # the handshake timeout is over
        with self._inbox.lock:
            self._inbox.wake()  # connect() may wait for this

    def start_reader(self) -> None:
        """Start the reader thread: for good on a server connection or over pipes; on a
        client while message handlers are registered (``on_message`` starts it)."""
        with self._inbox.lock:
            if not self._turn.start_reader():
                return
        reader = threading.Thread(
            target=self._read_loop, name=f"aurora-read-{self._name}", daemon=True
        )
        reader.start()
        self._reader = reader  # published once started: close() may join it at once

    # -- reading: the reader thread ----------------------------------------

    def _read_loop(self) -> None:
        """The reader thread: takes the read turn for each read, and gives it back after.

        A client's reader waits for data without the turn (``poll``), so that a
        ``wait_event`` caller may read meanwhile; then it takes the turn and reads
        what is there, if that caller has not. Elsewhere it waits in the read,
        turn held: nobody else reads a server connection or a pipe.
        """
        inbox, turn = self._inbox, self._turn
        poller = None
        if self._waits_without_turn and isinstance(self._stream, socket.socket):
            poller = select.poll()
            try:
                poller.register(self._stream, select.POLLIN)
            except (ValueError, OSError):  # the channel closed while this thread started
                with inbox.lock:
                    turn.stop_reader()
                return
        while True:
            # Data, the end of the stream or an error; or, after a while without,
            # a look at whether to stop (the handlers are gone, the channel closed).
            readable = poller is None or bool(poller.poll(_IDLE_CHECK_MS))
            with inbox.lock:
                while not turn.free and not inbox.closed:  # a caller is reading
                    inbox.wait(None)
                # Under the lock: a handler may be registering right now.
                if inbox.closed or (self._reads_on_demand and not self._message_handlers):
                    turn.stop_reader()  # receive() callers read for themselves now
                    return
                if not readable:
                    continue
                turn.take(by_reader=True)
            messages, end = self._read_chunk(None if poller is None else 0.0)
            if messages:
                self._hand_over(messages, by_reader=True)
            self._give_back_turn(end)
            if end is not None:
                return

    # -- reading: the turn ---------------------------------------------------

    def _read_turn(self, wait: float) -> None:
        """With the read turn held: read once (waiting at most ``wait`` seconds for
        data), then end the turn."""
        messages, end = self._read_chunk(wait)
        self._end_turn(messages, end)

    def _end_turn(self, messages: list[IpcMessage], end: Optional[str]) -> None:
        """A caller's read turn: hand over what it read, give the turn back."""
        if messages:
            self._hand_over(messages, by_reader=False)
        self._give_back_turn(end)

    def _give_back_turn(self, end: Optional[str]) -> None:
        """Let others read; or, if the connection ends, keep the turn (nothing reads a
        closed stream) and end it."""
        inbox, turn = self._inbox, self._turn
        with inbox.lock:
            if end is None and self._closed:
                end = "closed by this side"  # its shutdown() woke this read
            if end is None:
                turn.give_back()
                return
            if not turn.begin_end():
                return
        self._end(end)

    def _hand_over(self, messages: list[IpcMessage], by_reader: bool) -> None:
        """To the handlers if any are registered, else into the inbox."""
        inbox = self._inbox
        if not by_reader:
            # A receive() caller took the turn with the inbox empty: no room to wait
            # for. And the lock alone keeps a handler being registered from missing
            # these: _message_handlers_changed takes the queued messages under it.
            with inbox.lock:
                if not self._message_handlers:
                    inbox.put_all(messages)
                    return
        # Under _delivering, so a handler being registered (which takes the messages
        # already queued) and this delivery cannot cross: nothing is left behind.
        with self._delivering:
            messages = self._deliver(messages)
            while messages and by_reader and not inbox.wait_for_room(self._has_message_handlers):
                messages = self._deliver(messages)
            if messages:
                with inbox.lock:
                    inbox.put_all(messages)

    def _has_message_handlers(self) -> bool:
        return bool(self._message_handlers)

    def _read_chunk(
        self, wait: Optional[float], spin: float = 0.0
    ) -> tuple[list[IpcMessage], Optional[str]]:
        """Read and decode one chunk: its messages, and why the connection ends, if it does.

        ``spin``: poll this long before sleeping for data (see ``READ_SPIN``)."""
        try:
            data = self._recv(wait, spin)
        except (socket.timeout, TimeoutError):
            return [], "no hello within the handshake timeout"
        except OSError as exc:
            return [], f"connection lost: {exc}"
        if data is None:
            return [], None  # nothing within ``wait``
        if not data:
            return [], "the peer closed the connection"
        try:
            messages = self._feed(data)
        except IpcChannelError as exc:  # a reply could not be written: the peer is gone
            return [], str(exc)
        except Exception:
            log.exception("channel %r: reading failed", self._name)
            return [], "reading failed"
        if self._session.must_close:
            return messages, "session refused or frame too large"
        return messages, None

    # -- the end -------------------------------------------------------------

    def _end(self, reason: str) -> None:
        """Close the socket, tell the server and the state, wake waiters (once).

        Run by whoever decided the end (``ReadTurn.begin_end``): the holder of the
        read turn, or ``_close_stream`` when nobody reads. In that order, so a
        caller woken with ``Disconnected`` finds the channel shut down and gone
        from the server's ``connections``.
        """
        self._closed = True
        with contextlib.suppress(OSError):
            self._stream.shutdown(socket.SHUT_RDWR)  # wakes a writer blocked in sendall
        with self._write_lock, contextlib.suppress(OSError):
            self._stream.close()  # under the lock: no write is using the descriptor
        log.debug("channel %r ended: %s", self._name, reason)
        if self._on_closed is not None:
            self._on_closed(self)
        # Code that watches the ShutdownState (Peer) fails its pending requests now.
        self._state.shutdown()
        inbox = self._inbox
        inbox.close(f"channel {self._name!r}: {reason}")
        with inbox.lock:
            self._turn.finish_end()

    def _on_shutdown(self) -> None:
        if not self._turn.over:  # else _end is closing the channel already
            self._closed_locally = True
            self._close_stream()

    def _close_stream(self) -> None:
        """Stop the connection: whoever reads wakes (EOF) and ends it; if nobody reads, here."""
        self._closed = True
        inbox, turn = self._inbox, self._turn
        inbox.close(f"channel {self._name!r} was closed")
        with contextlib.suppress(OSError):  # already closed
            self._stream.shutdown(socket.SHUT_RDWR)
        with inbox.lock:
            end_here = turn.free and turn.begin_end()  # kept: nothing reads a closed stream
        if end_here:
            self._end("closed while nothing read")

    def close(self, timeout: float = 1.0) -> None:
        """Close the connection and wake blocked callers with ``Disconnected``. Idempotent."""
        self.shutdown()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)
