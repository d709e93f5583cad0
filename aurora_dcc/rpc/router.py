"""``PluginRouter``: plugins serve methods under their own namespace, ``plugin:method``.

A plugin is a mapping of method names to callables, or an object whose public
methods are its methods. The router registers each as ``<plugin>:<method>``
in a :class:`HandlerRegistry`, so a ``Peer`` routes ``exporter:run`` to the
``exporter`` plugin with its one dispatch (params, errors and all). The
separator is a colon because method names themselves may hold dots
(``lights:scene.list`` is method ``scene.list`` of plugin ``lights``).

Plugins emit events through the router: ``router.emit("exporter", "progress",
data)`` sends event ``exporter:progress`` with the emitter the host gave the
router (``peer.emit`` for one connection, a server's broadcast for all).

Usage::

    registry = HandlerRegistry()
    peer = Peer(channel, registry=registry)
    router = PluginRouter(registry, emitter=peer.emit)

    router.register("exporter", {"run": run_export, "status": status})
    router.register("lights", LightsPlugin())        # its public methods
    router.registered()                               # ['exporter', 'lights']
    other_side.request("exporter:run", {"path": "/tmp/a.abc"})
    router.emitter_for("exporter")("progress", {"pct": 50})   # event 'exporter:progress'
    router.unregister("lights")                       # its methods are gone (-32601)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .registry import HandlerRegistry

__all__ = ["SEPARATOR", "PluginRouter", "split_method"]

SEPARATOR = ":"

Emitter = Callable[[str, Any], None]


def split_method(name: str) -> tuple[str, str]:
    """``"exporter:run"`` -> ``("exporter", "run")``; ``("", name)`` if not namespaced."""
    plugin, sep, method = name.partition(SEPARATOR)
    return (plugin, method) if sep else ("", name)


def _plugin_methods(plugin: object) -> dict[str, Callable[..., Any]]:
    """A plugin's methods by name: a mapping's items, or an object's public callables."""
    if isinstance(plugin, Mapping):
        return dict(plugin)
    methods: dict[str, Callable[..., Any]] = {}
    for attr in dir(plugin):
        if attr.startswith("_"):
            continue
        value = getattr(plugin, attr)
        if callable(value) and not isinstance(value, type):
            methods[attr] = value
    return methods


class PluginRouter:
    """Registers plugins' methods as ``plugin:method`` handlers; see the module docstring.

    ``emitter(event, data)`` sends events for ``emit``; it can also be set
    later through the ``emitter`` attribute.

    Usage::

        router = PluginRouter(rpc.registry, emitter=rpc.emit)
        router.register("exporter", {"run": run_export})     # serves 'exporter:run'
    """

    def __init__(self, registry: HandlerRegistry, emitter: Optional[Emitter] = None) -> None:
        self.registry = registry
        self.emitter = emitter
        self._lock = threading.Lock()
        self._plugins: dict[str, list[str]] = {}  # plugin name -> its full method names

    def register(self, plugin: str, methods: object, *, raw: bool = False) -> list[str]:
        """Serve ``methods`` (mapping or object) as plugin ``plugin``; returns the method names.

        Registering a name again replaces that plugin's methods in one change.
        ``raw=True`` registers them as raw handlers (``fn(data)``; for a plugin
        that forwards its requests to another process).
        """
        if not isinstance(plugin, str) or not plugin or SEPARATOR in plugin:
            raise ValueError(f"a plugin name is a non-empty string without ':', not {plugin!r}")
        by_name = _plugin_methods(methods)
        if not by_name:
            raise ValueError(f"plugin {plugin!r} has no methods")
        for method in by_name:
            if not isinstance(method, str) or not method:
                raise ValueError(f"plugin {plugin!r}: bad method name {method!r}")
        named = {f"{plugin}{SEPARATOR}{method}": fn for method, fn in by_name.items()}
        with self._lock:
            old = self._plugins.get(plugin, [])
            stale = [name for name in old if name not in named]
            self.registry.update(named, remove=stale, raw=raw)
            self._plugins[plugin] = sorted(named)
        return sorted(named)

    def unregister(self, plugin: str) -> bool:
        """Remove plugin ``plugin`` and its methods; False if it was not registered."""
        with self._lock:
            names = self._plugins.pop(plugin, None)
            if names is None:
                return False
            self.registry.update({}, remove=names)
        return True

    def registered(self) -> list[str]:
        """Names of the registered plugins, sorted."""
        with self._lock:
            return sorted(self._plugins)

    def methods(self, plugin: str) -> list[str]:
        """The full method names (``plugin:method``) of ``plugin``; empty if unknown."""
        with self._lock:
            return list(self._plugins.get(plugin, ()))

    def emit(self, plugin: str, event: str, data: Any = None) -> None:
        """Send event ``<plugin>:<event>`` through the host's emitter."""
        emitter = self.emitter
        if emitter is None:
            raise RuntimeError("PluginRouter has no emitter: pass emitter= or set router.emitter")
        emitter(f"{plugin}{SEPARATOR}{event}", data)

    def emitter_for(self, plugin: str) -> Emitter:
        """An ``emit(event, data)`` bound to ``plugin``, to hand to the plugin itself."""

        def emit(event: str, data: Any = None) -> None:
            self.emit(plugin, event, data)

        return emit

    def __repr__(self) -> str:
        return f"<PluginRouter {self.registered()!r}>"
