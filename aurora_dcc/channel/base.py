"""``IpcChannel``: the interface every transport implements.

A channel moves :class:`IpcMessage` objects between two ends. Transports
(``ThreadChannel``, the local-socket channels, ``DccIpcChannel``, the legacy
stdio pipe) implement ``send``, ``receive`` and ``try_receive``; this base
class supplies the rest: ``send_json``, ``emit``, ``on_message`` handler
bookkeeping, shutdown through a :class:`ShutdownState`, metrics, and the
context-manager protocol.

Usage::

    with ThreadChannel("jobs") as channel:
        channel.emit("progress", {"done": 3})
        msg = channel.receive(timeout=1.0)
        msg.event, msg.data        # ('progress', {'done': 3})
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Callable, Optional, Protocol

from ..protocol.message import IpcMessage
from .metrics import IpcChannelMetrics
from .shutdown import ShutdownState

__all__ = ["IpcChannel", "MessageHandler", "Waitable"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[IpcMessage], None]


class Waitable(Protocol):
    """What ``wait_event`` waits for: a ``threading.Event``, or anything with these two.

    Usage::

        done = threading.Event()
        channel.wait_event(done, timeout=5.0)   # True once done.set() was called
    """

    def is_set(self) -> bool: ...

    def wait(self, timeout: Optional[float] = None) -> bool: ...


class IpcChannel(ABC):
    """Abstract channel. Subclasses implement ``send``, ``receive``, ``try_receive``.

    Handlers registered with ``on_message`` receive incoming messages instead
    of ``receive()``; which thread they run on is the transport's to say (the
    main thread for ``DccIpcChannel``). A handler that raises is logged and
    counted in ``metrics.errors``; the channel keeps going.

    Usage::

        unsubscribe = channel.on_message(lambda msg: print(msg.type, msg.data))
        channel.emit("progress", {"done": 3})
        unsubscribe()
        channel.close()
    """

    def __init__(self, name: str, shutdown_state: Optional[ShutdownState] = None) -> None:
        self._name = name
        self._state = shutdown_state if shutdown_state is not None else ShutdownState()
        self._message_handlers: list[MessageHandler] = []
        self.metrics = IpcChannelMetrics(self._queue_length)

    # -- the transport's part ----------------------------------------------

    @abstractmethod
    def send(self, msg: IpcMessage) -> None:
        """Send one message. Raises ``ShuttingDown``, ``Disconnected`` or ``SendFailed``."""

    @abstractmethod
    def receive(self, timeout: Optional[float] = None) -> IpcMessage:
        """Wait for the next message.

        Raises ``ChannelTimeout`` after ``timeout`` seconds (``None`` waits until
        a message arrives or the channel shuts down), ``Disconnected`` when the
        peer is gone, ``ShuttingDown`` once shut down and nothing is left.
        """

    @abstractmethod
    def try_receive(self) -> Optional[IpcMessage]:
        """The next message if one is waiting, else ``None``. Never blocks."""

    def _queue_length(self) -> int:
        """Messages waiting to be received (for metrics); transports override."""
        return 0

    # -- shared behaviour --------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def peer_info(self) -> dict[str, object]:
        """What the other side said of itself in its latest ``hello``/``ready``.

        Socket channels fill it during the handshake (``peer``, ``pid``,
        ``handlers``, ...); in-process channels have no handshake: ``{}``.
        """
        return {}

    @property
    def shutdown_state(self) -> ShutdownState:
        return self._state

    def send_json(self, data: Any) -> None:
        """Send ``data`` as the payload of a ``data`` message."""
        self.send(IpcMessage.data_message(data))

    def emit(self, event: str, data: Any = None) -> None:
        """Send an ``event`` message named ``event``."""
        self.send(IpcMessage.event_message(event, data))

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, hold this thread's sends; write them together at its end.

        Transports that write to a stream (the local sockets) then need one
        write for many messages, the fast way to stream events; order is kept,
        and a block that holds a lot writes as it goes. Sending from other
        threads is not held. Transports without writes (``ThreadChannel``)
        send as usual.

        Usage::

            with channel.batch():
                for frame, value in samples:
                    channel.emit("sample", {"frame": frame, "value": value})
        """
        return contextlib.nullcontext()

    def on_message(self, handler: MessageHandler) -> Callable[[], None]:
        """Register ``handler(msg)`` for incoming messages; returns an unsubscribe function."""
        self._message_handlers.append(handler)
        self._message_handlers_changed()

        def unsubscribe() -> None:
            if handler in self._message_handlers:
                self._message_handlers.remove(handler)

        return unsubscribe

    def _message_handlers_changed(self) -> None:  # noqa: B027 - optional hook
        """Hook for transports that start delivery when the first handler arrives."""

    def _dispatch(self, msg: IpcMessage) -> None:
        """Hand ``msg`` to every handler; a handler that raises is logged and counted."""
        handlers = self._message_handlers
        if len(handlers) == 1:  # the common case, without copying the list
            handler = handlers[0]
            try:
                handler(msg)
            except Exception:
                self._handler_failed(handler)
            return
        for handler in tuple(handlers):  # a handler may (un)register handlers
            try:
                handler(msg)
            except Exception:
                self._handler_failed(handler)

    def _handler_failed(self, handler: MessageHandler) -> None:
        """In an ``except`` block: log the handler's exception and count it."""
        self.metrics.record_error()
        log.exception("channel %r: message handler %r raised", self._name, handler)

    delivers_while_waiting = False
    """``wait_event`` called on the thread that delivers this channel's messages
    keeps delivering them (an event loop). Where False, a handler waiting there
    for a reply on its own channel would wait for itself."""

    def wait_event(self, event: Waitable, timeout: Optional[float]) -> bool:
        """Wait for ``event`` the way this transport needs; True if it was set.

        Callers that wait for a reply (RPC) use this instead of ``event.wait`` so
        that a transport whose messages are delivered by an event loop (the Qt
        side) can keep that loop running while the caller waits on its thread,
        and a socket client can read its reply on the waiting thread.
        """
        return event.wait(timeout)

    def shutdown(self) -> None:
        """Stop accepting work and wake every blocked caller. Idempotent, never raises."""
        self._state.shutdown()

    def is_shutdown(self) -> bool:
        return self._state.is_shutdown()

    def wait_for_drain(self, timeout: Optional[float] = None) -> None:
        """Wait until in-flight operations finish; raises ``ChannelTimeout``."""
        self._state.wait_for_drain(timeout)

    def close(self) -> None:
        """Release the channel's resources (``shutdown()`` for in-process channels)."""
        self.shutdown()

    def __enter__(self) -> IpcChannel:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "shut down" if self.is_shutdown() else "open"
        return f"<{type(self).__name__} {self._name!r} {state}>"
