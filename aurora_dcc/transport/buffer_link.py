"""``BufferLink``: one stream connection's buffers (docs/PROTOCOL.md, "Buffers (1.1)").

Both roles of a connection in one object, which its ``StreamSession`` holds:

- **placer** (sending): a buffer of ``threshold`` bytes or more goes into a block
  of this connection's :class:`~aurora_dcc.transport.shared_memory.BlockPool`
  when the peer announced shared memory; anything else goes inline (base64).
- **resolver** (receiving): a shared-memory descriptor is checked and copied out
  of the peer's block, whose lease is returned with the read (a ``release``
  frame), or, with ``zero_copy``, lent to the application as a read-only view
  until ``release_buffers`` and until nothing views it any more.

The announcement in ``hello``/``ready`` is ``{"shm": true, "prefix": ...}``: this
side maps shared memory, and names its blocks on this connection with
``prefix``. A side never maps a block whose name does not start with the prefix
its peer announced on this connection.

Usage (what ``StreamSession`` and ``StreamChannel`` do)::

    link = BufferLink()
    hello_data["buffers"] = link.offer()
    link.peer_offered(peer_hello_data.get("buffers"))
    frame = encode_frame(msg, max_frame, link)       # buffers placed by the link
    msg = IpcMessage.from_json(frame, link)          # descriptors resolved by it
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional

from ..errors import ErrorCode, IpcChannelError, SerializationError
from ..protocol.buffer_values import BufferLease, as_received, lend
from ..protocol.buffers import (
    BufferPlacer,
    BufferResolver,
    BufferSettings,
    buffer_settings,
    flat_shape,
    inline_body,
)
from ..protocol.framing import encode_frame
from ..protocol.message import IpcMessage, IpcMessageType
from .shared_memory import (
    BlockMaps,
    BlockPool,
    Waiter,
    connection_prefix,
    is_connection_prefix,
)

__all__ = ["PER_CONNECTION", "BufferLink", "CarriesBuffers"]

log = logging.getLogger(__name__)

_RELEASE = IpcMessageType.RELEASE


class CarriesBuffers(Exception):
    """Raised by :data:`PER_CONNECTION`: the message holds buffers."""


class _PerConnection(BufferPlacer):
    """A broadcast's first try: encoded once for every client unless it holds buffers."""

    def place(self, raw: memoryview, fmt: str, shape: list[int]) -> dict[str, Any]:
        raise CarriesBuffers()


PER_CONNECTION = _PerConnection()
"""The placer a server's broadcast encodes with first (``CarriesBuffers``: encode per client)."""


def release_frame(leases: list[str]) -> bytes:
    """The frame that returns ``leases`` to the sender."""
    return encode_frame(IpcMessage(_RELEASE, {"leases": leases}))


class BufferLink(BufferPlacer, BufferResolver):
    """One connection's shared memory and buffer settings; see the module docstring.

    Usage::

        link = BufferLink(BufferSettings(threshold=1 << 20))
        link.offer()          # {'shm': True, 'prefix': 'ad1000_4711_a1b2c3_1_'}
    """

    def __init__(self, settings: Optional[BufferSettings] = None) -> None:
        self.settings = settings if settings is not None else buffer_settings()
        self.prefix: Optional[str] = connection_prefix() if self.settings.shared_memory else None
        self.peer_prefix: Optional[str] = None
        self.peer_maps_shm = False
        self.max_frame: Optional[int] = None
        self._pool: Optional[BlockPool] = None
        self._maps: Optional[BlockMaps] = None
        self._lock = threading.Lock()
        self._returns: list[str] = []  # leases to return once the message being read is done
        self._owe: Optional[Callable[[bytes], None]] = None
        self._send: Optional[Callable[[bytes], None]] = None
        self._wait: Optional[Waiter] = None
        self._closed = False

    # -- wiring ----------------------------------------------------------------

    def attach(
        self,
        owe: Callable[[bytes], None],
        send: Callable[[bytes], None],
        wait: Optional[Waiter],
        max_frame: Optional[int],
    ) -> None:
        """``owe``: queue a frame with the current read's replies; ``send``: send a
        frame from any thread; ``wait``: how a sender waits for returned blocks."""
        self._owe, self._send, self._wait, self.max_frame = owe, send, wait, max_frame

    def offer(self) -> Optional[dict[str, Any]]:
        """This side's announcement for ``hello``/``ready`` (``None``: no shared memory)."""
        if self.prefix is None:
            return None
        return {"shm": True, "prefix": self.prefix}

    def peer_offered(self, offer: Any) -> None:
        """Record the peer's announcement (its ``hello``'s or first ``ready``'s ``buffers``)."""
        if not isinstance(offer, dict):
            return
        prefix = offer.get("prefix")
        # Only a name prefix of the form we make: "" would let the peer name any block.
        self.peer_prefix = prefix if is_connection_prefix(prefix) else None
        self.peer_maps_shm = offer.get("shm") is True

    @property
    def pool(self) -> Optional[BlockPool]:
        """The blocks this side lends on the connection (``None`` until the first)."""
        return self._pool

    def set_settings(self, settings: BufferSettings) -> None:
        """New settings for what is sent and received from now on (the offer stays)."""
        self.settings = settings
        pool = self._pool
        if pool is not None:
            pool.max_bytes, pool.timeout = settings.max_shared_bytes, settings.wait_timeout

    # -- sending ---------------------------------------------------------------

    def place(self, raw: memoryview, fmt: str, shape: list[int]) -> dict[str, Any]:
        return self.place_buffer(raw, fmt, shape, patient=True)

    def without_waiting(self) -> BufferPlacer:
        """A placer for this connection that never waits for the peer to return blocks
        (``ChannelTimeout`` at once when the pool is at its bound): for broadcasts."""
        return _Impatient(self)

    def place_buffer(
        self, raw: memoryview, fmt: str, shape: list[int], patient: bool
    ) -> dict[str, Any]:
        """``place``; ``patient``: wait for blocks at the pool's bound (else fail at once)."""
        settings = self.settings
        nbytes = raw.nbytes
        if (
            nbytes < settings.threshold
            or not self.peer_maps_shm
            or self.prefix is None
            or not settings.shared_memory
        ):
            return inline_body(raw, fmt, shape)
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._closed:
                    return inline_body(raw, fmt, shape)
                if self._pool is None:
                    self._pool = BlockPool(
                        self.prefix, settings.max_shared_bytes, settings.wait_timeout
                    )
                pool = self._pool
        name, lease = pool.lend(raw, self._wait, patient)
        return {
            "format": fmt,
            "shape": shape,
            "shm": name,
            "offset": 0,
            "nbytes": nbytes,
            "lease": lease,
        }

    def take_back(self, bodies: list[dict[str, Any]]) -> None:
        pool = self._pool
        if pool is not None:
            pool.give_back([body["lease"] for body in bodies if "lease" in body])

    def on_release(self, data: Any) -> None:
        """The peer's ``release``: these leases are free for the next transfer."""
        leases = data.get("leases") if isinstance(data, dict) else None
        pool = self._pool
        if isinstance(leases, list) and pool is not None:
            pool.give_back(leases)

    # -- receiving -------------------------------------------------------------

    def _peer_maps(self) -> BlockMaps:
        maps = self._maps
        if maps is None:
            with self._lock:
                if self._maps is None:
                    self._maps = BlockMaps(self.peer_prefix)
                maps = self._maps
        return maps

    def resolve_shared(self, body: dict[str, Any]) -> Any:
        lease = body.get("lease")
        if not isinstance(lease, str):
            raise SerializationError(
                "a shared-memory descriptor needs a string 'lease'", ErrorCode.INVALID_PARAMS
            )
        if self.prefix is None:  # this side did not announce shared memory
            self._returns.append(lease)
            return super().resolve_shared(body)
        fmt, shape, nbytes = body.get("format", "B"), body.get("shape"), body.get("nbytes")
        if not isinstance(shape, list):
            shape = flat_shape(fmt, nbytes) if isinstance(nbytes, int) else []
        maps = self._peer_maps()
        settings = self.settings
        if not settings.zero_copy:
            self._returns.append(lease)  # returned with this read, whatever happens below
            data = maps.copy_out(body.get("shm"), body.get("offset"), body.get("nbytes"))
            return as_received(data, fmt, shape, settings.numpy)
        try:
            root, view = maps.borrow(body.get("shm"), body.get("offset"), body.get("nbytes"))
        except IpcChannelError:
            self._returns.append(lease)
            raise
        value = as_received(view, fmt, shape, settings.numpy, readonly=True)
        del view  # the value holds it now; the lease must not
        return lend(value, _SharedLease(self, root, lease))

    def message_done(self) -> None:
        returns = self._returns
        if returns and self._owe is not None:
            self._owe(release_frame(list(returns)))
        returns.clear()

    def return_now(self, leases: list[str]) -> None:
        """Return zero-copy leases from any thread (a released value)."""
        send = self._send
        if send is None or self._closed:
            return
        try:
            send(release_frame(leases))
        except IpcChannelError as exc:  # the connection ended: the sender cleans up
            log.debug("release of %d lease(s) not sent: %s", len(leases), exc)

    # -- the end -----------------------------------------------------------------

    def close(self, peer_gone: bool = True) -> None:
        """The connection is over: remove this side's blocks, drop the peer's mappings,
        and remove the blocks the peer offered (its end is closed too). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, maps = self._pool, self._maps
        if pool is not None:
            pool.close()
        if maps is not None:
            maps.close(remove_peer_blocks=peer_gone)
        elif peer_gone and self.peer_prefix is not None:
            BlockMaps(self.peer_prefix).close(remove_peer_blocks=True)


class _Impatient(BufferPlacer):
    """A link's placer that does not wait for blocks (see ``BufferLink.without_waiting``)."""

    def __init__(self, link: BufferLink) -> None:
        self._link = link
        self.max_frame = link.max_frame

    def place(self, raw: memoryview, fmt: str, shape: list[int]) -> dict[str, Any]:
        return self._link.place_buffer(raw, fmt, shape, patient=False)

    def take_back(self, bodies: list[dict[str, Any]]) -> None:
        self._link.take_back(bodies)


class _SharedLease(BufferLease):
    """A zero-copy lease: returned once nothing made from its view is alive
    (``BlockMaps.borrow``'s ``root`` can be released)."""

    def __init__(self, link: BufferLink, root: memoryview, lease: str) -> None:
        self._link = link
        self._root = root
        self._lease = lease
        self._wanted = False
        self._done = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._done:
                return
            self._wanted = True
            try:
                self._root.release()
            except BufferError:  # a view of it is alive: never lend this memory again yet
                _pending.add(self)
                return
            self._done = True
        _pending.discard(self)
        self._link.return_now([self._lease])

    def dropped(self) -> None:
        if not self._done:
            _returner.put(self)


_pending: set[_SharedLease] = set()
"""Released leases whose block some view still maps: tried again on every drop."""


class _Returner:
    """A thread that returns leases whose values were garbage-collected.

    A finalizer may run on any thread, at any point (inside a lock of ours):
    it only queues, and this thread sends the ``release``.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Optional[_SharedLease]] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._start = threading.Lock()

    def put(self, lease: _SharedLease) -> None:
        self._queue.put(lease)  # SimpleQueue.put is safe in a finalizer
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="aurora-buffer-returns", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                lease = self._queue.get(timeout=delay if _pending else None)
            except queue.Empty:  # views of pending blocks may be gone by now: try again
                lease, delay = None, min(delay * 2, _RETRY_LAST)
            else:
                if lease is None:
                    return
                delay = _RETRY_FIRST
            for waiting in [*([lease] if lease is not None else []), *list(_pending)]:
                try:
                    waiting.release()
                except Exception:  # keep returning the others
                    log.exception("could not return a shared-memory lease")


_RETRY_FIRST = 0.01
"""Seconds before a pending lease is tried again: a finalizer runs before the value's
own buffer is let go, so the first try after a drop may come too early."""
_RETRY_LAST = 1.0
_returner = _Returner()
