"""RPC over any channel: requests, responses and events (docs/PROTOCOL.md, message layer).

- :mod:`.peer`: ``Peer``, one end of a conversation: ``request``/``emit``/``on``,
  and serving requests with a registry.
- :mod:`.registry`: ``HandlerRegistry``, request handlers by method name.
- :mod:`.responder`: how a request becomes a handler call and a response.
- :mod:`.pending`: requests in flight, matched to their replies by id; timeouts.
- :mod:`.call_error`: ``IpcCallError``, what a failed request raises.
- :mod:`.server`: ``RpcServer``, one registry served to every client of a server.
- :mod:`.router`: ``PluginRouter``, plugins' methods as ``plugin:method``.
"""

from __future__ import annotations

from .call_error import IpcCallError
from .peer import Peer
from .registry import HandlerRegistry
from .router import PluginRouter
from .server import RpcServer

__all__ = ["HandlerRegistry", "IpcCallError", "Peer", "PluginRouter", "RpcServer"]
