"""Shared-memory blocks for buffers: names, the sweep, a sender's pool, a receiver's maps.

A block is a named shared-memory segment (:mod:`.shm_block`). Its name
says whose it is: ``ad<uid>_<pid>_<nonce>_<connection>_<n>``, so the sweep at a
process's first pool or mapping (:func:`sweep`) removes blocks whose owner process is
gone, and a connection's survivor removes the blocks its dead peer offered on
it (:func:`unlink_prefix`).

- :class:`BlockPool` (the sender, one per connection) copies a buffer into a
  free block, creating one only when none fits, within ``max_bytes`` in all;
  over that, the send waits until the receiver returns blocks.
- :class:`BlockMaps` (the receiver, one per connection) maps only blocks named
  with the prefix its peer announced on this connection, owned by this user,
  large enough for the descriptor; a block stays mapped, zero-copy leases
  included, until the peer removes it or the connection closes, so repeated
  transfers map nothing new on either side.

Usage::

    pool = BlockPool(connection_prefix(), max_bytes=1 << 30)
    name, lease = pool.lend(memoryview(b"x" * 100_000), wait=None)
    maps = BlockMaps(peer_prefix=pool.prefix)
    data = maps.copy_out(name, 0, 100_000)        # bytearray
    pool.give_back([lease]); pool.close(); maps.close()
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

from ..errors import ChannelTimeout, ErrorCode, SerializationError
from ..protocol.buffers import BlocksExhausted
from .shm_block import SHM_DIR, attach_block, create_block, is_current, unlink_block

__all__ = [
    "USER_PREFIX",
    "BlockMaps",
    "BlockPool",
    "connection_prefix",
    "is_connection_prefix",
    "list_blocks",
    "sweep",
    "unlink_prefix",
]

log = logging.getLogger(__name__)

USER_PREFIX = f"ad{os.geteuid()}_" if hasattr(os, "geteuid") else "ad_"
"""The start of every block name of this user."""

_PROCESS_PREFIX = f"{USER_PREFIX}{os.getpid()}_{os.urandom(3).hex()}"
_connections = itertools.count(1)
_NAME = re.compile(r"ad[0-9]*_[0-9]+_[0-9a-f]+_[0-9]+_[0-9]+\Z")
_PREFIX = re.compile(r"ad[0-9]*_[0-9]+_[0-9a-f]+_[0-9]+_\Z")
_MIN_BLOCK = 64 * 1024
_MAX_MAPS = 64
"""Mappings a receiver keeps per connection (the peer's pool reuses its blocks)."""


def is_connection_prefix(prefix: object) -> bool:
    """Whether ``prefix`` is what :func:`connection_prefix` makes (a peer's announcement)."""
    return isinstance(prefix, str) and _PREFIX.match(prefix) is not None


def connection_prefix() -> str:
    """A fresh name prefix for one connection's blocks (``ad<uid>_<pid>_<nonce>_<n>_``)."""
    global _PROCESS_PREFIX
    pid = os.getpid()
    if f"_{pid}_" not in _PROCESS_PREFIX:  # a forked child names its own blocks
        _PROCESS_PREFIX = f"{USER_PREFIX}{pid}_{os.urandom(3).hex()}"
    return f"{_PROCESS_PREFIX}_{next(_connections)}_"


def _bad(text: str) -> SerializationError:
    return SerializationError(text, ErrorCode.INVALID_PARAMS)


def list_blocks(prefix: str = USER_PREFIX) -> list[str]:
    """Names of this user's blocks that start with ``prefix`` (Linux; else empty)."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(prefix))


def unlink_prefix(prefix: str) -> int:
    """Remove every block named ``prefix...`` (a closed connection's); how many."""
    names = list_blocks(prefix)
    for name in names:
        unlink_block(name)
    return len(names)


def _owner_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


_swept = False


def _sweep_once() -> None:
    """The sweep at this process's first pool or first received block."""
    global _swept
    if not _swept:
        _swept = True
        sweep()


def sweep() -> int:
    """Remove this user's blocks whose owner process is gone; how many (Linux, where
    ``/dev/shm`` lists them; elsewhere nothing)."""
    removed = 0
    if os.name == "nt":  # no listing, and os.kill(pid, 0) would end the process there
        return 0
    for name in list_blocks():
        if not _NAME.match(name):
            continue
        pid = int(name[len(USER_PREFIX) :].split("_", 1)[0])
        if pid != os.getpid() and _owner_gone(pid):
            unlink_block(name)
            removed += 1
    if removed:
        log.info("removed %d shared-memory block(s) left by processes that are gone", removed)
    return removed


def _block_size(nbytes: int) -> int:
    """Blocks come in powers of two, so one serves the next transfer of about the same size."""
    return max(_MIN_BLOCK, 1 << (nbytes - 1).bit_length())


Waiter = Callable[[threading.Event, Optional[float]], bool]
"""How a sender waits for returned blocks (the channel's ``wait_event``: it may read meanwhile)."""


class BlockPool:
    """A sender's blocks on one connection: lend, give back, bounded in total.

    Usage::

        pool = BlockPool(connection_prefix(), max_bytes=1 << 30)
        name, lease = pool.lend(memoryview(data), wait=channel.wait_event)
        pool.give_back([lease])                   # the receiver's ``release``
    """

    def __init__(self, prefix: str, max_bytes: int, timeout: float = 30.0) -> None:
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._lock = threading.Lock()
        self._free: list[Any] = []
        self._lent: dict[str, Any] = {}
        self._waiting: list[threading.Event] = []
        self._total = 0
        self._sizes: dict[str, int] = {}  # block name -> bytes counted against max_bytes
        self._names = itertools.count(1)
        self._leases = itertools.count(1)
        self._closed = False
        _sweep_once()

    @property
    def total_bytes(self) -> int:
        """Bytes of all this pool's blocks (free and lent)."""
        return self._total

    @property
    def block_count(self) -> int:
        with self._lock:
            return len(self._free) + len(self._lent)

    def lend(
        self, raw: memoryview, wait: Optional[Waiter], patient: bool = True
    ) -> tuple[str, str]:
        """Copy ``raw`` into a block; its name and the lease the receiver returns.

        Waits (through ``wait``) while the pool is at its bound; ``BlocksExhausted``
        after ``timeout`` seconds, at once if not ``patient``, or for a buffer larger
        than the bound.
        """
        nbytes = raw.nbytes
        if _block_size(nbytes) > self.max_bytes:
            raise BlocksExhausted(
                f"a buffer of {nbytes} bytes is over this connection's shared-memory bound "
                f"({self.max_bytes} bytes)"
            )
        block = self._take(nbytes, wait, self.timeout if patient else 0.0)
        try:
            block.buf[:nbytes] = raw
        except BaseException:
            self._put_free(block)
            raise
        with self._lock:
            lease = f"{next(self._leases)}"
            self._lent[lease] = block
            if self._closed:  # closed meanwhile: nobody will return it
                self._lent.pop(lease)
                self._destroy(block)
        return block.name, lease

    def _take(self, nbytes: int, wait: Optional[Waiter], timeout: float) -> Any:
        deadline: Optional[float] = None
        while True:
            event = threading.Event()
            with self._lock:
                if self._closed:
                    raise ChannelTimeout("the connection's shared memory is closed")
                fits = [b for b in self._free if b.size >= nbytes]
                if fits:
                    block = min(fits, key=lambda b: b.size)
                    self._free.remove(block)
                    return block
                size = _block_size(nbytes)
                while self._free and self._total + size > self.max_bytes:
                    self._destroy(self._free.pop(0))  # too small for this: make room
                if self._total + size <= self.max_bytes:
                    self._total += size
                    name = f"{self.prefix}{next(self._names)}"
                    break
                self._waiting.append(event)
            if deadline is None:
                deadline = time.monotonic() + timeout
            left = deadline - time.monotonic()
            waited = left > 0 and (wait(event, left) if wait is not None else event.wait(left))
            with self._lock:
                if event in self._waiting:
                    self._waiting.remove(event)
            if not waited and time.monotonic() >= deadline:
                raise BlocksExhausted(
                    f"the receiver returned no shared-memory block within {timeout}s "
                    f"({self._total} bytes lent, the bound is {self.max_bytes})"
                )
        try:
            block = create_block(name, size)
        except BaseException:
            with self._lock:
                self._total -= size
            raise
        with self._lock:
            self._sizes[block.name] = size
        return block

    def give_back(self, leases: list[str]) -> int:
        """The receiver is done with these leases; how many were lent (others are ignored)."""
        back = 0
        with self._lock:
            for lease in leases:
                block = self._lent.pop(lease, None) if isinstance(lease, str) else None
                if block is not None:
                    back += 1
                    self._free.append(block)
            waiting, self._waiting = self._waiting, []
        for event in waiting:
            event.set()
        return back

    def _put_free(self, block: Any) -> None:
        with self._lock:
            if self._closed:
                self._destroy(block)
            else:
                self._free.append(block)

    def _destroy(self, block: Any) -> None:
        """Unmap and remove ``block``; under ``_lock``."""
        self._total -= self._sizes.pop(block.name, 0)
        with contextlib.suppress(BufferError):
            block.close()
        unlink_block(block.name)

    def close(self) -> None:
        """Remove every block, lent or not (the connection is over). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            blocks = self._free + list(self._lent.values())
            self._free, self._lent = [], {}
            for block in blocks:
                self._destroy(block)
            waiting, self._waiting = self._waiting, []
        for event in waiting:
            event.set()


class BlockMaps:
    """A receiver's view of the blocks its peer offers on one connection.

    Usage::

        maps = BlockMaps(peer_prefix="ad1000_4711_a1b2c3_1_")
        data = maps.copy_out("ad1000_4711_a1b2c3_1_1", 0, 1024)    # bytearray
        root, view = maps.borrow("ad1000_4711_a1b2c3_1_1", 0, 1024)  # zero-copy
    """

    def __init__(self, peer_prefix: Optional[str]) -> None:
        self.peer_prefix = peer_prefix
        self._maps: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self.seen: set[str] = set()
        """Names of blocks the peer offered (removed at the end if the peer did not)."""
        _sweep_once()

    def _check(self, name: Any, offset: Any, nbytes: Any) -> str:
        prefix = self.peer_prefix
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad(f"bad shared-memory block name {str(name)[:80]!r}")
        if prefix is None or not name.startswith(prefix):
            raise _bad(f"shared-memory block {name!r} was not offered on this connection")
        if offset.__class__ is not int or nbytes.__class__ is not int or offset < 0 or nbytes < 0:
            raise _bad("'offset' and 'nbytes' must be non-negative integers")
        return name

    def _fits(self, block: Any, name: str, offset: int, nbytes: int) -> None:
        if offset + nbytes > block.size:
            raise _bad(
                f"shared-memory block {name!r} holds {block.size} bytes, "
                f"too small for {nbytes} at offset {offset}"
            )

    def _mapped(self, name: Any, offset: Any, nbytes: Any) -> Any:
        """The kept mapping of the block a descriptor names, checked; under ``_lock``.

        A block is mapped (and checked) at its first descriptor and kept for the next
        ones; mapped and checked anew if its name now names another file or a size too
        small for the descriptor (the peer made it anew)."""
        name = self._check(name, offset, nbytes)
        if self._closed:
            raise _bad("the connection's shared memory is closed")
        block = self._maps.get(name)
        if block is not None:
            if offset + nbytes <= block.size and is_current(block):
                self._maps.move_to_end(name)
                return block
            _close_quietly(self._maps.pop(name))
        block = attach_block(name)
        self.seen.add(name)
        self._forget_removed()
        self._maps[name] = block
        if len(self._maps) > _MAX_MAPS:
            _close_quietly(self._maps.popitem(last=False)[1])
        self._fits(block, name, offset, nbytes)
        return block

    def copy_out(self, name: Any, offset: Any, nbytes: Any) -> bytearray:
        """The bytes of a descriptor, copied (the mapping is kept for the next one)."""
        with self._lock:
            block = self._mapped(name, offset, nbytes)
            with block.buf[offset : offset + nbytes] as part:
                return bytearray(part)

    def _forget_removed(self) -> None:
        """Unmap the blocks the peer has removed (its pool made room for a bigger one):
        a mapping would keep their memory. Under ``_lock``, when a new block is mapped."""
        listed = set(list_blocks(self.peer_prefix)) if self.peer_prefix else set()
        if not listed:
            return  # nothing listed (not Linux): the bound on mappings has to do
        for gone in [name for name in self._maps if name not in listed]:
            _close_quietly(self._maps.pop(gone))

    def borrow(self, name: Any, offset: Any, nbytes: Any) -> tuple[memoryview, memoryview]:
        """A descriptor's bytes in the kept mapping, for one zero-copy lease: ``(root, view)``.

        ``view`` (read-only) is what to lend; ``root.release()`` raises ``BufferError``
        while ``view`` or anything made from it (a slice, a cast, a numpy array) is
        alive, and succeeds once none is: then the lease may go back.
        """
        with self._lock:
            block = self._mapped(name, offset, nbytes)
            root = block.buf[offset : offset + nbytes].toreadonly()
        from pickle import PickleBuffer  # here: nothing else of the package needs pickle

        # memoryview(root) would share root's buffer and hold no export of it
        wrapper = PickleBuffer(root)
        try:
            return root, memoryview(wrapper)
        finally:
            wrapper.release()

    def close(self, remove_peer_blocks: bool) -> None:
        """Drop the mappings; ``remove_peer_blocks``: also remove the blocks the peer
        offered (its end is gone, so nobody else will)."""
        with self._lock:
            self._closed = True
            maps, self._maps = list(self._maps.values()), OrderedDict()
        for block in maps:
            _close_quietly(block)
        if remove_peer_blocks and self.peer_prefix is not None:
            for name in self.seen:
                unlink_block(name)
            unlink_prefix(self.peer_prefix)


def _close_quietly(block: Any) -> None:
    try:
        block.close()
    except BufferError:  # a view still uses it: the mapping goes with that view
        log.debug("shared-memory block %r is still viewed; unmapped later", block.name)
