"""PluginRouter: plugins' methods served as ``plugin:method`` by a Peer over a real channel."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aurora_dcc import ErrorCode, ThreadChannel
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer
from aurora_dcc.rpc.router import PluginRouter, split_method

WAIT = 5.0


class Lights:
    """A plugin object: its public methods are its methods."""

    def __init__(self) -> None:
        self.lights = ["key", "fill"]

    def list(self) -> list[str]:
        return self.lights

    def add(self, name: str) -> int:
        self.lights.append(name)
        return len(self.lights)

    def _private(self) -> None:
        raise AssertionError("not a method")


@pytest.fixture
def setup() -> Iterator[tuple[PluginRouter, Peer, Peer]]:
    a, b = ThreadChannel.pair("plugins")
    registry = HandlerRegistry()
    host = Peer(a, registry=registry, name="host")
    client = Peer(b, name="tool")
    router = PluginRouter(registry, emitter=host.emit)
    yield router, host, client
    a.shutdown()


def test_requests_are_routed_to_their_plugin(setup: tuple[PluginRouter, Peer, Peer]) -> None:
    router, _, client = setup
    assert router.register("lights", Lights()) == ["lights:add", "lights:list"]
    router.register("exporter", {"run": lambda path: f"exported {path}", "scene.list": lambda: []})
    assert router.registered() == ["exporter", "lights"]
    assert client.request("lights:list") == ["key", "fill"]
    assert client.request("lights:add", {"name": "rim"}) == 3
    assert client.request("exporter:run", ["/tmp/a.abc"]) == "exported /tmp/a.abc"
    # Method names may hold dots: the colon alone separates the plugin.
    assert client.request("exporter:scene.list") == []
    assert split_method("exporter:scene.list") == ("exporter", "scene.list")
    assert split_method("scene.info") == ("", "scene.info")


def test_plugin_errors_use_the_peer_error_codes(setup: tuple[PluginRouter, Peer, Peer]) -> None:
    router, _, client = setup
    router.register("lights", Lights())
    cases = [
        ("lights:remove", {}, ErrorCode.METHOD_NOT_FOUND),
        ("nobody:list", {}, ErrorCode.METHOD_NOT_FOUND),
        ("lights:_private", {}, ErrorCode.METHOD_NOT_FOUND),
        ("lights:add", {"colour": "red"}, ErrorCode.INVALID_PARAMS),
        ("lights:add", {"name": None}, None),  # returns normally: 3
    ]
    for method, data, code in cases:
        if code is None:
            assert client.request(method, data) == 3
            continue
        with pytest.raises(IpcCallError) as info:
            client.request(method, data)
        assert info.value.code == code, method


def test_unregister_removes_only_that_plugin(setup: tuple[PluginRouter, Peer, Peer]) -> None:
    router, host, client = setup
    router.register("lights", Lights())
    router.register("exporter", {"run": lambda: "ran"})
    host.register("scene.info", lambda: "host handler")
    assert router.unregister("lights") is True
    assert router.unregister("lights") is False
    assert router.registered() == ["exporter"]
    assert router.methods("lights") == []
    assert host.registry.names() == ["exporter:run", "scene.info"]
    with pytest.raises(IpcCallError) as info:
        client.request("lights:list")
    assert info.value.code == ErrorCode.METHOD_NOT_FOUND
    assert client.request("exporter:run") == "ran"


def test_registering_again_replaces_the_plugin_in_one_ready(
    setup: tuple[PluginRouter, Peer, Peer],
) -> None:
    router, host, client = setup
    router.register("exporter", {"run": lambda: 1, "stop": lambda: 2})
    readies: list[list[str]] = []
    host.announce()
    assert client.wait_ready(WAIT)
    stop = host.registry.subscribe(lambda: readies.append(host.registry.names()))
    router.register("exporter", {"run": lambda: 10, "status": lambda: "idle"})
    stop()
    assert readies == [["exporter:run", "exporter:status"]]  # one change, not three
    assert client.request("exporter:run") == 10
    client.ping()  # the re-sent ready has been handled by now
    assert client.remote_handler_names == ["exporter:run", "exporter:status"]


def test_plugins_emit_namespaced_events_through_the_router(
    setup: tuple[PluginRouter, Peer, Peer],
) -> None:
    router, _, client = setup
    seen: list[tuple[str, Any]] = []
    done = threading.Event()
    client.on("exporter:*", lambda e, d: seen.append((e, d)))
    client.on("exporter:done", lambda e, d: done.set())

    def run() -> str:
        progress("progress", {"pct": 50})
        progress("done")
        return "ok"

    router.register("exporter", {"run": run})
    progress = router.emitter_for("exporter")
    assert client.request("exporter:run") == "ok"
    assert done.wait(WAIT)
    assert seen == [("exporter:progress", {"pct": 50}), ("exporter:done", {})]


def test_a_forwarding_plugin_proxies_to_another_peer(
    setup: tuple[PluginRouter, Peer, Peer],
) -> None:
    # A plugin served by another process (here: another Peer): the router's
    # methods forward the request data unchanged, whatever its shape.
    router, _, client = setup
    a, b = ThreadChannel.pair("plugin-process")
    try:
        plugin_side, host_side = Peer(a), Peer(b)
        plugin_side.register("scale", lambda x, factor=2: x * factor)
        forward = {method: functools.partial(host_side.request, method) for method in ["scale"]}
        router.register("remote", forward, raw=True)
        assert client.request("remote:scale", {"x": 3, "factor": 5}) == 15
        assert client.request("remote:scale", [4]) == 8
        with pytest.raises(IpcCallError) as info:
            client.request("remote:scale", {"y": 1})
        assert info.value.code == ErrorCode.INVALID_PARAMS  # the plugin's answer, passed on
    finally:
        a.shutdown()


def test_bad_plugins_are_refused_with_a_clear_error() -> None:
    router = PluginRouter(HandlerRegistry())
    for name in ("", "a:b"):
        with pytest.raises(ValueError, match="plugin name"):
            router.register(name, {"x": lambda: None})
    with pytest.raises(ValueError, match="no methods"):
        router.register("empty", {})
    with pytest.raises(TypeError, match="callable"):
        router.register("bad", {"x": 42})
    assert router.registered() == []
    with pytest.raises(RuntimeError, match="no emitter"):
        router.emit("p", "e")
