"""The read turn of a pure-Python socket channel: who may read its stream now.

Reads of one stream must never interleave, and a stream must never be closed
under a reader, so one thread at a time holds the channel's *read turn*. Who
can hold it (docs/design/threading.md tells why):

* the channel's **reader thread** (every server connection and pipe channel
  has one for good; a client has one while message handlers are registered);
* a **caller** reading for itself: ``receive()`` on a client without a reader
  thread, ``wait_event()`` waiting for its own reply (``Peer.request``), or
  ``connect()`` waiting for ``ready``.

:class:`ReadTurn` holds one :class:`ReadState` and makes every transition::

                  start_reader()                          take(reader)
        IDLE  ---------------------->  READER_WAITING  ------------------>  READER_READING
         ^ |  <----------------------     |     ^      <------------------
         | |       stop_reader()          |     |          give_back()
         | | take(caller)     take(caller)|     | give_back()
         | v                              v     |
        CALLER_READING                  CALLER_READING
        (no reader thread)              (the reader thread waits)
         |
         +-- give_back() --> IDLE

        a holder whose read ended the connection,
        or a closer while the turn is free  -- begin_end() -->  ENDING  -- finish_end() -->  ENDED

``begin_end()`` is taken by the holder of the turn when its read ends the
connection, or by ``close()`` when the turn is free (then nobody reads; the
closer keeps the turn so nothing reads a closed stream). ``reader`` says
whether a reader thread exists (a caller that gives the turn back leaves
``READER_WAITING`` then, else ``IDLE``); ``holder`` is the thread that holds
the turn, so a thread never waits for a turn it holds itself.

Lock order (a lock may be taken while holding the ones above it, never the
other way round)::

    1. _batch_lock      (a thread's batch(); only ever try-acquired)
    2. _delivering      (RLock: one thread hands messages to the handlers)
    3. _write_lock      (one write at a time on the stream)
    4. the server's _lock   (connection lists; from on_listed/on_closed)
    5. the inbox's lock (= the read turn's lock: inbox, ReadTurn, their cond)

The read itself, and every handler, run without 3-5 held; a stream is only
closed (``close``) under ``_write_lock`` by whoever ended it.

Usage (with the inbox's lock held)::

    turn = ReadTurn(inbox.wake)
    with inbox.lock:
        if turn.free:
            turn.take(by_reader=False)
    data = sock.recv(65536)              # outside the lock, turn held
    with inbox.lock:
        turn.give_back()
"""

from __future__ import annotations

import enum
import threading
from typing import Callable

__all__ = ["ReadState", "ReadTurn"]

_get_ident = threading.get_ident


class ReadState(enum.Enum):
    """Who reads a channel's stream now (see the module docstring).

    Usage::

        channel.read_state is ReadState.CALLER_READING   # a caller reads its own reply
    """

    IDLE = "idle"
    """Nobody reads and no reader thread runs: a caller may take the turn."""
    READER_WAITING = "reader waiting"
    """The reader thread runs but does not read (it waits for data): the turn is free."""
    READER_READING = "reader reading"
    """The reader thread holds the turn."""
    CALLER_READING = "caller reading"
    """A caller (``receive``, ``wait_event``, ``connect``) holds the turn."""
    ENDING = "ending"
    """The end is decided; whoever decided it closes the stream. Nobody reads again."""
    ENDED = "ended"
    """The stream is closed and everybody was told."""


IDLE = ReadState.IDLE
READER_WAITING = ReadState.READER_WAITING
READER_READING = ReadState.READER_READING
CALLER_READING = ReadState.CALLER_READING
ENDING = ReadState.ENDING
ENDED = ReadState.ENDED


class ReadTurn:
    """The read turn's state and its transitions; every method needs the lock held.

    The lock is the channel inbox's (one lock for both, so a caller can take a
    queued message or the turn in one step); ``wake`` wakes the threads waiting
    on its condition, called whenever the turn may have become free or ended.

    Usage::

        with inbox.lock:
            if turn.free:
                turn.take(by_reader=True)
    """

    __slots__ = ("_wake", "holder", "reader", "state")

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self.state = IDLE
        self.reader = False
        """A reader thread exists (it may be waiting for the turn or for data)."""
        self.holder = 0
        """``threading.get_ident()`` of the thread holding the turn, else 0."""

    @property
    def free(self) -> bool:
        """Nobody reads and the connection goes on: the turn may be taken."""
        state = self.state
        return state is IDLE or state is READER_WAITING

    @property
    def over(self) -> bool:
        """The end is decided (``ENDING`` or ``ENDED``)."""
        state = self.state
        return state is ENDING or state is ENDED

    def held_here(self) -> bool:
        """This thread holds the turn (safe without the lock: only it sets itself)."""
        return self.holder == _get_ident()

    def take(self, by_reader: bool) -> None:
        """Take the free turn for the reader thread or for a caller."""
        if not (self.state is IDLE or self.state is READER_WAITING):
            raise RuntimeError(f"the read turn is not free: {self.state}")
        self.state = READER_READING if by_reader else CALLER_READING
        self.holder = _get_ident()

    def give_back(self) -> None:
        """The holder read and the connection goes on: free the turn, wake waiters."""
        self.state = READER_WAITING if self.reader else IDLE
        self.holder = 0
        self._wake()

    def start_reader(self) -> bool:
        """A reader thread is about to start; False if one runs or the end is decided."""
        state = self.state
        if self.reader or state is ENDING or state is ENDED:
            return False
        self.reader = True
        if state is IDLE:
            self.state = READER_WAITING
        return True

    def stop_reader(self) -> None:
        """The reader thread leaves (no handlers, or the end): callers read for themselves."""
        self.reader = False
        if self.state is READER_WAITING:
            self.state = IDLE
        self._wake()

    def begin_end(self) -> bool:
        """Decide the end (the holder, or a closer while the turn is free); False if
        it was decided already. The decider keeps the turn and runs the end."""
        state = self.state
        if state is ENDING or state is ENDED:
            return False
        self.state = ENDING
        self.holder = _get_ident()
        return True

    def finish_end(self) -> None:
        """The stream is closed and everybody told."""
        self.state = ENDED
        self.holder = 0
        self._wake()
