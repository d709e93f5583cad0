"""``RpcServer``: one :class:`HandlerRegistry` served to every client of an ``IpcServer``.

Each established connection gets its own :class:`Peer` on the shared
registry; ``emit`` broadcasts an event to every client; a change to the
registry is re-announced (a fresh ``ready``) to everyone through the server.
Works the same over ``LocalSocketChannelServer`` and ``QtLocalSocketServer``.

Usage::

    server = LocalSocketChannelServer("auroraview_4711", token=token)
    rpc = RpcServer(server, name="maya-2025")

    @rpc.handler("scene.info")
    def scene_info():
        return {"nodes": 42}

    rpc.on("tool.*", lambda event, data: log.info("%s %s", event, data))
    rpc.emit("selection.changed", {"nodes": ["pCube1"]})     # to every client
    rpc.peers[0].request("tool.run", {"preset": "fast"})     # call a client back
    rpc.close()                                              # closes the server too
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..channel.server import IpcServer
from .peer import DEFAULT_TIMEOUT, EventHandler, Peer
from .registry import F, HandlerRegistry

__all__ = ["RpcServer"]

PeerHandler = Callable[[Peer], None]


class RpcServer:
    """Serves ``registry`` (a new :class:`HandlerRegistry` if None) to every client of ``server``.

    ``name``, ``timeout`` and ``executor`` are passed to each :class:`Peer`.
    ``on_peer(fn)`` calls ``fn(peer)`` for each new client (before its first
    message is delivered, on the thread the server accepts on).

    Usage::

        with RpcServer(LocalSocketChannelServer("auroraview_4711"), registry) as rpc:
            rpc.on_peer(lambda peer: log.info("client %s", peer.remote_info.get("peer")))
            rpc.emit("scene.changed", {})
    """

    def __init__(
        self,
        server: IpcServer,
        registry: Optional[HandlerRegistry] = None,
        *,
        name: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        executor: Optional[concurrent.futures.Executor] = None,
    ) -> None:
        self.server = server
        self.registry = registry if registry is not None else HandlerRegistry()
        self._peer_options: dict[str, Any] = {
            "name": name,
            "timeout": timeout,
            "executor": executor,
        }
        self._lock = threading.Lock()
        self._peers: dict[IpcChannel, Peer] = {}
        self._subscriptions: list[tuple[str, EventHandler]] = []
        self._peer_handlers: list[PeerHandler] = []
        self._closed = False
        server.set_handler_names(self.registry.names())
        self._unsubscribe = self.registry.subscribe(self._registry_changed)
        server.on_connection(self._connected)
        for conn in server.connections:  # clients that arrived before this object
            self._connected(conn)

    # -- serving -----------------------------------------------------------

    def handler(self, name: Optional[str] = None) -> Callable[[F], F]:
        """Decorator: ``@rpc.handler("scene.info")`` (name defaults to the function's)."""
        return self.registry.handler(name)

    def register(self, name: str, fn: F) -> F:
        return self.registry.register(name, fn)

    def unregister(self, name: str) -> bool:
        return self.registry.unregister(name)

    def _registry_changed(self) -> None:
        # The server re-announces to every client; the peers stay quiet (they were
        # created without session_started), so each client hears one ``ready``.
        self.server.set_handler_names(self.registry.names())

    # -- clients -----------------------------------------------------------

    def _connected(self, conn: IpcChannel) -> None:
        with self._lock:
            if self._closed or conn in self._peers:
                return
            peer = Peer(conn, self.registry, **self._peer_options)
            self._peers[conn] = peer
            subscriptions = list(self._subscriptions)
            peer_handlers = list(self._peer_handlers)
        for pattern, handler in subscriptions:
            peer.on(pattern, handler)
        conn.shutdown_state.on_shutdown(lambda: self._forget(conn))
        for fn in peer_handlers:
            fn(peer)

    def _forget(self, conn: IpcChannel) -> None:
        with self._lock:
            peer = self._peers.pop(conn, None)
        if peer is not None:
            peer.close()

    @property
    def peers(self) -> list[Peer]:
        """A :class:`Peer` for each connected client, oldest first."""
        live = self.server.connections
        with self._lock:
            return [self._peers[conn] for conn in live if conn in self._peers]

    def on_peer(self, fn: PeerHandler) -> Callable[[], None]:
        """Call ``fn(peer)`` for every client that connects from now on; returns unsubscribe."""
        with self._lock:
            self._peer_handlers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._peer_handlers:
                    self._peer_handlers.remove(fn)

        return unsubscribe

    def on(self, pattern: str, handler: EventHandler) -> None:
        """Subscribe ``handler(event, data)`` to events from every client, now and later."""
        with self._lock:
            self._subscriptions.append((pattern, handler))
            peers = list(self._peers.values())
        for peer in peers:
            peer.on(pattern, handler)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to every connected client."""
        self.server.emit(event, data)

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Close the server (its clients get ``bye``; the requests they sent before it
        are still answered, within the server's ``close_grace``), then every peer.
        Returns at once. Idempotent."""
        with self._lock:
            self._closed = True
        self._unsubscribe()
        self.server.close()  # first: a request that arrives now is answered -32002
        with self._lock:
            peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            peer.close()

    def __enter__(self) -> RpcServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RpcServer on {self.server!r}, {len(self._peers)} peer(s)>"
