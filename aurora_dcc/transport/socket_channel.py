"""``LocalSocketChannel``: one end of a pure-Python local-socket connection.

Built in layers, each a class of its own module: :class:`~aurora_dcc.transport.stream.StreamChannel`
(the protocol, sending, delivery), :class:`~aurora_dcc.transport.socket_write.SocketWriting`
(writes, batches), :class:`~aurora_dcc.transport.socket_read.SocketReading` (the reader
thread, the read turn, the end); this one adds opening a connection and the callers
that read for themselves (``receive()``, ``wait_event()``). Who reads when:
docs/design/threading.md.

Usage::

    channel = LocalSocketChannel.connect("auroraview_4711", token="s3cret", retry=5)
    channel.send(IpcMessage.request("scene.info"))
    reply = channel.receive(timeout=5.0)
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Union

from ..channel.base import Waitable
from ..channel.shutdown import ShutdownState
from ..errors import Disconnected
from ..protocol.framing import DEFAULT_MAX_FRAME
from ..protocol.message import IpcMessage
from .address import resolve_address
from .read_turn import ReadState
from .retry import RetryPolicy, retrying
from .socket_io import Stream, may_poll, open_stream
from .socket_read import SocketReading

__all__ = ["READ_SPIN", "LocalSocketChannel"]

READ_SPIN = 100e-6
"""The fast path's one switch: seconds a caller that reads for itself polls its socket
before it sleeps in the kernel; 0 turns the fast path off.

A reply often arrives within tens of microseconds, and a thread that sleeps for
it pays for its core going idle and waking again (docs/performance.md has the
figures). Polling holds the GIL between system calls, so a thread of this
process may wait up to this long to run: a channel polls only when its peer is
another process, on more than one core (Linux, ``SO_PEERCRED``), never on its
reader thread. With 0, nobody polls, and a ``wait_event`` caller
(``Peer.request``) waits for the reader thread to deliver its reply instead of
reading it itself. Read when a channel is made: set it before connecting.
"""

_WAIT_SLICE = 0.05
"""A caller reading while it waits for an event looks at the event at least this often
(the event may be set by a thread that does not read: a timeout, ``Peer.close``)."""
_IDLE = ReadState.IDLE


class LocalSocketChannel(SocketReading):
    """One end of a local-socket connection (see :mod:`aurora_dcc.transport.local_socket`).

    Clients get one from :meth:`connect`, servers from
    ``LocalSocketChannelServer.accept`` or ``on_connection``; the constructor
    is internal. ``close()`` on either end wakes a blocked ``receive`` on both
    ends with ``Disconnected``. Messages that arrived before the first
    ``on_message`` handler is registered are handed to it at registration
    (on the registering thread), then delivery continues on the reader thread.
    When the connection ends, either way, ``shutdown_state`` is shut down, so
    whoever watches it (``Peer``) learns at once; a client without handlers
    learns it when it next reads or sends. After the peer left, ``send`` raises
    ``Disconnected``; after a local close, ``ShuttingDown``.

    Usage::

        channel = LocalSocketChannel.connect("auroraview_4711", token=token, retry=5)
        channel.send(IpcMessage.request("scene.info"))
        reply = channel.receive(timeout=5.0)     # read on this thread
        channel.on_message(print)                # from now on, on the reader thread
    """

    def __init__(
        self,
        stream: Stream,
        name: str,
        *,
        server: bool,
        token: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        list_handler_names: Optional[Callable[[], list[str]]] = None,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
        max_send_buffer: Optional[int] = None,
        shutdown_state: Optional[ShutdownState] = None,
        on_listed: Optional[Callable[[LocalSocketChannel], None]] = None,
        on_established: Optional[Callable[[LocalSocketChannel], None]] = None,
        on_closed: Optional[Callable[[LocalSocketChannel], None]] = None,
    ) -> None:
        super().__init__(
            stream,
            name,
            server=server,
            token=token,
            max_frame=max_frame,
            peer_name=peer_name,
            list_handler_names=list_handler_names,
            capacity=capacity,
            send_timeout=send_timeout,
            max_send_buffer=max_send_buffer,
            shutdown_state=shutdown_state,
            on_listed=on_listed,
            on_established=on_established,
            on_closed=on_closed,
        )
        self._spin = READ_SPIN if READ_SPIN and may_poll(stream) else 0.0
        self._caller_reads = self._waits_without_turn and READ_SPIN > 0

    # -- opening -----------------------------------------------------------

    @classmethod
    def connect(
        cls,
        name: str,
        token: Optional[str] = None,
        timeout: float = 5.0,
        retry: Union[RetryPolicy, int, None] = None,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_name: Optional[str] = None,
        capacity: int = 10_000,
        send_timeout: Optional[float] = 60.0,
    ) -> LocalSocketChannel:
        """Connect to the server of channel ``name`` and open the session.

        Sends ``hello`` (with ``token``) and waits up to ``timeout`` seconds for
        the server's ``ready``. Raises ``Unauthorized`` / ``UnsupportedProtocol``
        when the server refuses, ``ChannelTimeout`` when it does not answer, and
        ``Disconnected`` when nobody serves ``name`` (after the attempts of
        ``retry``: a :class:`RetryPolicy`, a number of attempts, or ``None`` for one).

        A server whose backlog stays full (it accepts nobody) within ``timeout`` is
        ``ChannelTimeout``; a server run by another user is ``UntrustedServer`` (nothing
        is sent to it); a name no server could use is ``InvalidChannelName``.
        """
        address = resolve_address(name)

        def attempt() -> LocalSocketChannel:
            stream = open_stream(address, timeout, name)
            channel = cls(
                stream,
                name,
                server=False,
                token=token,
                max_frame=max_frame,
                peer_name=peer_name,
                capacity=capacity,
                send_timeout=send_timeout,
            )
            channel._handshake(timeout, f"the server of {name!r}")
            return channel

        return retrying(retry, attempt, name)

    # -- callers that read for themselves ------------------------------------

    def _next_message(self, timeout: Optional[float]) -> Optional[IpcMessage]:
        """The next message, or ``None`` once ``timeout`` passed (0: only what is there now).

        From the inbox if one waits there; else, when nobody reads and no reader
        thread runs, read the stream on this thread (leader/follower: a second
        caller waits until the first one's read, then takes what it queued or
        reads in turn).
        """
        inbox, turn = self._inbox, self._turn
        start = time.monotonic()
        with inbox.lock:  # the common case first: a message waits, or this thread reads
            if inbox.messages:
                return inbox.pop()
            read_now = turn.state is _IDLE and not inbox.closed
            if read_now:
                turn.take(by_reader=False)
        if read_now:
            msg = self._read_for_caller(timeout)
            if msg is not None or timeout == 0.0:
                return msg
        deadline = None if timeout is None else start + timeout
        remaining = timeout
        have_read = read_now
        while True:
            with inbox.lock:
                while True:
                    if inbox.messages:
                        return inbox.pop()
                    if inbox.closed:
                        raise Disconnected(inbox.reason)
                    can_read = turn.state is _IDLE  # no reader thread, nobody reading
                    if can_read and not have_read:
                        break  # the first read waits the whole timeout
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                    if can_read:
                        break
                    inbox.wait(remaining)  # the reader queues, gives up its turn, or ends
                turn.take(by_reader=False)
            have_read = True
            msg = self._read_for_caller(remaining)
            if msg is not None:
                return msg

    def _read_for_caller(self, wait: Optional[float]) -> Optional[IpcMessage]:
        """``_next_message``'s read turn: read once, keep the first message, queue the rest.

        The common case (no handler, the connection goes on) takes the inbox's
        lock once; the others end the turn as ``_read_turn`` does.
        """
        messages, end = self._read_chunk(wait, self._spin)
        inbox = self._inbox
        with inbox.lock:
            # The inbox was empty when this thread took the turn, and only the turn's
            # holder queues. A handler registered meanwhile takes what is queued
            # under this lock (_message_handlers_changed), so it cannot miss these.
            if end is None and not self._closed and not (messages and self._message_handlers):
                self._turn.give_back()
                if not messages:
                    return None
                if len(messages) > 1:
                    inbox.put_all(messages[1:])
                return messages[0]
        self._end_turn(messages, end)
        return None

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event``, reading the socket on this thread meanwhile.

        On a client with handlers, a waiting caller reads whenever the read turn
        is free (its reader thread holds the turn only while it reads): the reply
        (a ``Peer`` request's, say) is read and delivered to the handlers on the
        thread that waits for it, with the poll of ``READ_SPIN``. Whatever else
        arrives meanwhile goes to the handlers too, in order. Without handlers
        (what is read would only wait for ``receive()``), on a server connection,
        on the thread that holds the turn already (a handler), with ``READ_SPIN``
        0, or without ``select.poll``, this is a plain wait.
        """
        if event.is_set():
            return True
        turn = self._turn
        if not self._caller_reads or turn.held_here():
            return event.wait(timeout)
        inbox = self._inbox
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _WAIT_SLICE
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return event.is_set()
            with inbox.lock:
                if not turn.free and not event.is_set() and not inbox.closed:
                    inbox.wait(wait)  # until the reader or another caller gives the turn back
                if event.is_set():
                    return True
                # Closed: nothing more to read, but whoever watches the shutdown (a
                # Peer failing its calls) may still set the event. No handlers:
                # reading would only fill the inbox. Either way, wait plainly.
                if inbox.closed or not self._message_handlers:
                    break
                if not turn.free:
                    continue
                turn.take(by_reader=False)
            messages, end = self._read_chunk(wait, self._spin)
            self._end_turn(messages, end)  # delivers on this thread, wakes the others
            if event.is_set():
                return True
        return event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _message_handlers_changed(self) -> None:
        if not self._message_handlers:
            return
        # Hand over what arrived before this handler, before the reader delivers more.
        with self._delivering:
            self._drain_inbox_to_handlers()
        if self._reads_on_demand:
            self.start_reader()  # delivers from now on, while handlers are registered
