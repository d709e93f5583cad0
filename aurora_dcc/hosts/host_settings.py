"""The settings a process's one host was started with, and refusing other settings later.

``start_host()`` (Qt) and ``start()`` (Blender) return the running host when
called again. Asked for settings that differ from the running host's (another
name, token, peer name, registry, option), they raise :class:`HostSettingsError`
naming each difference, rather than silently serving what was not asked for.
A setting left out matches whatever the running host has.

Usage (in a ``start_host``)::

    if _host is not None:
        refuse_other_settings(_host, started_with(QtHost, _host, _options), name, options)
        return _host
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["HostSettingsError", "refuse_other_settings", "started_with"]

_SECRET = frozenset({"token"})
"""Settings whose values an error message must not show."""


class HostSettingsError(RuntimeError):
    """``start_host()`` was asked for settings other than the running host's.

    Usage::

        try:
            host = start_host(token=token)
        except HostSettingsError as exc:
            log.error("%s", exc)         # names each difference; stop_host() first to change
    """


def started_with(host_class: type, host: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings ``host`` (a ``host_class``) runs with: its constructor's defaults,
    overridden by the ``options`` it was given, and the values it resolved itself."""
    settings = {
        key: param.default
        for key, param in inspect.signature(host_class).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    settings.update(options)
    settings.update(
        name=host.name, token=host.token, peer_name=host.peer_name, registry=host.registry
    )
    return settings


def refuse_other_settings(
    host: Any, running: Mapping[str, Any], name: Optional[str], options: Mapping[str, Any]
) -> None:
    """Raise :class:`HostSettingsError` if ``name``/``options`` ask for other settings than
    ``running`` (``name`` None and options left out match anything)."""
    requested = dict(options)
    if name is not None:
        requested["name"] = name
    differences = []
    for key, wanted in requested.items():
        if key not in running:
            differences.append(f"{key} (not a setting of this host)")
            continue
        have = running[key]
        same = wanted is have if key == "registry" else wanted == have
        if same:
            continue
        if key in _SECRET:
            differences.append(f"{key} (differs)")
        else:
            differences.append(f"{key}={wanted!r} (running: {have!r})")
    if differences:
        raise HostSettingsError(
            f"a host already runs in this process ({host.name!r}) with other settings: "
            + ", ".join(differences)
            + "; call stop_host() first to start one with these, or leave them out to get it"
        )
