"""``HandlerRegistry``: request handlers by method name, and how a request's data becomes arguments.

One registry may serve many ``Peer``s (a server serves every connection with
one); each entry remembers its handler's signature so that arguments a
handler cannot take are refused with -32602 before it is called.

Usage::

    registry = HandlerRegistry()

    @registry.handler("scene.info")
    def scene_info(verbose=False):
        return {"nodes": 42, "verbose": verbose}

    registry.names()                    # ['scene.info']
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Generic, Optional, TypeVar

__all__ = ["F", "HandlerEntry", "HandlerRegistry", "Subscribers"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")


class Subscribers(Generic[S]):
    """Subscribers in a copy-on-write tuple: read ``items`` without a lock, from any thread.

    Usage::

        listeners: Subscribers[Callable[[], None]] = Subscribers()
        unsubscribe = listeners.add(on_change)
        for listener in listeners.items: listener()
        unsubscribe()
    """

    __slots__ = ("_lock", "items")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: tuple[S, ...] = ()

    def add(self, item: S) -> Callable[[], None]:
        """Add ``item``; returns the function that removes it again."""
        with self._lock:
            self.items = (*self.items, item)

        def unsubscribe() -> None:
            with self._lock:
                self.items = tuple(i for i in self.items if i is not item)

        return unsubscribe


class HandlerEntry:
    """A registered callable, its signature (``None``: nothing to check), and whether raw.

    Usage::

        entry = HandlerEntry(lambda a, b: a + b, raw=False)
        args, kwargs = entry.arguments({"a": 1, "b": 2})
        entry.check(args, kwargs)       # TypeError if the handler cannot take them
        entry.fn(*args, **kwargs)       # 3
    """

    __slots__ = ("_fits", "fn", "raw", "signature")

    MAX_SHAPES = 64
    """Argument shapes remembered as fitting the signature (bounded: names come from peers)."""

    def __init__(self, fn: Callable[..., Any], raw: bool) -> None:
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.raw = raw
        self.signature: Optional[inspect.Signature] = None
        self._fits: set[tuple[int, frozenset[str]]] = set()
        if not raw:
            with contextlib.suppress(TypeError, ValueError):  # some builtins have none
                self.signature = inspect.signature(fn)

    def check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` if the handler cannot take these arguments.

        Whether arguments bind depends only on their count and keyword names,
        so shapes that fitted once are remembered and not bound again.
        """
        if self.signature is None:
            return
        shape = (len(args), frozenset(kwargs))
        if shape in self._fits:
            return
        self.signature.bind(*args, **kwargs)
        if len(self._fits) < self.MAX_SHAPES:
            self._fits.add(shape)

    def arguments(self, data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A request's ``data`` as call arguments (see :mod:`aurora_dcc.rpc.peer`, "Params")."""
        if self.raw:
            return (data,), {}
        if isinstance(data, dict):
            return (), data
        if isinstance(data, list):
            return tuple(data), {}
        return (data,), {}


class HandlerRegistry:
    """Request handlers by method name; thread-safe, shareable by many ``Peer``s.

    A DCC server serves every connection with one registry; each ``Peer`` on
    it re-announces its handler names when the registry changes.

    Usage::

        registry = HandlerRegistry()
        registry.register("scene.info", scene_info)

        @registry.handler("scene.save")
        def save(path=None): ...

        Peer(channel_1, registry=registry); Peer(channel_2, registry=registry)
        server = LocalSocketChannelServer(name, handler_names=registry.names())  # for ``ready``
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, HandlerEntry] = {}
        self._listeners: Subscribers[Callable[[], None]] = Subscribers()

    def register(self, name: str, fn: F, *, raw: bool = False) -> F:
        """Serve ``name`` with ``fn`` (replacing any previous handler); returns ``fn``.

        ``raw=True``: ``fn(data)`` gets the request's ``data`` as it is, whatever
        its shape (for proxies that forward requests elsewhere).
        """
        self.update({name: fn}, raw=raw)
        return fn

    def handler(self, name: Optional[str] = None, *, raw: bool = False) -> Callable[[F], F]:
        """Decorator form of ``register``; the name defaults to the function's."""

        def decorate(fn: F) -> F:
            return self.register(name or fn.__name__, fn, raw=raw)

        return decorate

    def unregister(self, name: str) -> bool:
        """Stop serving ``name``; False if it was not registered."""
        return bool(self.update({}, remove=(name,)))

    def update(
        self,
        handlers: Mapping[str, Callable[..., Any]],
        remove: Iterable[str] = (),
        *,
        raw: bool = False,
    ) -> list[str]:
        """Remove ``remove`` and add ``handlers`` as one change; returns the names removed.

        Listeners hear about it once (one ``ready``, not one per handler).
        """
        for name in handlers:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a handler name must be a non-empty string, not {name!r}")
        entries = {name: HandlerEntry(fn, raw) for name, fn in handlers.items()}
        with self._lock:
            removed = [name for name in remove if self._entries.pop(name, None) is not None]
            self._entries.update(entries)
        if entries or removed:
            for listener in self._listeners.items:
                try:
                    listener()
                except Exception:
                    log.exception("handler registry listener %r raised", listener)
        return removed

    def get(self, name: str) -> Optional[Callable[..., Any]]:
        """The handler serving ``name``, or None."""
        entry = self._entries.get(name)
        return None if entry is None else entry.fn

    def entry(self, name: str) -> Optional[HandlerEntry]:
        """The entry serving ``name`` (handler, signature check, arguments), or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Sorted names of the registered handlers (what ``ready`` announces)."""
        with self._lock:
            return sorted(self._entries)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every change; returns an unsubscribe function."""
        return self._listeners.add(listener)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<HandlerRegistry {self.names()!r}>"
