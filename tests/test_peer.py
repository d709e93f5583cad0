"""Peer: RPC over a real ThreadChannel pair (real threads on both ends).

Requests, params, error codes, concurrency and ordering, timeouts, shutdown
and crash while requests are in flight, events with wildcards, ping, ready.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import wait_until

from aurora_dcc import ErrorCode, IpcMessage, ThreadChannel
from aurora_dcc.errors import IpcError
from aurora_dcc.rpc.peer import HandlerRegistry, IpcCallError, Peer

WAIT = 5.0  # generous bound for things that should happen at once


@pytest.fixture
def channels() -> Iterator[tuple[ThreadChannel, ThreadChannel]]:
    a, b = ThreadChannel.pair("rpc")
    yield a, b
    a.shutdown()


@pytest.fixture
def peers(channels: tuple[ThreadChannel, ThreadChannel]) -> Iterator[tuple[Peer, Peer]]:
    server, client = Peer(channels[0], name="server"), Peer(channels[1], name="client")
    yield server, client
    server.close()
    client.close()


def call_error(fn: Any, *args: Any, **kwargs: Any) -> IpcCallError:
    with pytest.raises(IpcCallError) as info:
        fn(*args, **kwargs)
    return info.value


# -- requests and params -------------------------------------------------------


def test_request_returns_the_handler_result(peers: tuple[Peer, Peer]) -> None:
    server, client = peers

    @server.handler("scene.info")
    def scene_info(verbose: bool = False) -> dict[str, Any]:
        return {"nodes": 42, "verbose": verbose}

    assert client.request("scene.info") == {"nodes": 42, "verbose": False}
    assert client.request("scene.info", {"verbose": True}) == {"nodes": 42, "verbose": True}
    # Both directions: the "client" serves too.
    client.register("client.echo", lambda x: x)
    assert server.request("client.echo", [[1, "two"]]) == [1, "two"]


def test_params_object_array_and_scalar(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    server.register("sub", lambda a, b: a - b)
    server.register("double", lambda x: x * 2)
    assert client.request("sub", {"a": 5, "b": 3}) == 2  # keywords
    assert client.request("sub", [5, 3]) == 2  # positional
    assert client.request("double", 21) == 42  # one argument
    assert client.request("double", "ab") == "abab"


def test_raw_handlers_get_data_as_it_is(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    seen: list[Any] = []

    @server.handler("proxy", raw=True)
    def proxy(data: Any) -> Any:
        seen.append(data)
        return data

    for data in ({"a": 1}, [1, 2], "x", None):
        client.request("proxy", data)
    assert seen == [{"a": 1}, [1, 2], "x", {}]  # absent data is {} (PROTOCOL.md)


def test_unknown_method_is_32601(peers: tuple[Peer, Peer]) -> None:
    exc = call_error(peers[1].request, "scene.nope")
    assert exc.code == ErrorCode.METHOD_NOT_FOUND
    assert "scene.nope" in exc.message
    assert exc.method == "scene.nope"


def test_params_the_handler_cannot_take_are_32602_and_it_is_not_called(
    peers: tuple[Peer, Peer],
) -> None:
    server, client = peers
    calls: list[object] = []
    server.register("one", lambda x: calls.append(x))
    for data in ({"y": 1}, {}, [1, 2], {"x": 1, "y": 2}):
        exc = call_error(client.request, "one", data)
        assert exc.code == ErrorCode.INVALID_PARAMS, data
        client.request("one", {"x": data})  # a shape that fits does not let others through
    assert calls == [{"y": 1}, {}, [1, 2], {"x": 1, "y": 2}]


def test_handler_exception_is_32603_with_type_and_traceback(peers: tuple[Peer, Peer]) -> None:
    server, client = peers

    def broken(n: int) -> None:
        # A TypeError *inside* the handler is an internal error, not bad params.
        raise TypeError(f"cannot use {n}")

    server.register("broken", broken)
    exc = call_error(client.request, "broken", {"n": 7})
    assert exc.code == ErrorCode.INTERNAL_ERROR
    assert "cannot use 7" in exc.message
    assert exc.data["type"] == "TypeError"
    assert 'raise TypeError(f"cannot use {n}")' in exc.data["traceback"]
    assert server.channel.metrics.errors == 1
    # The connection is still good.
    server.register("ok", lambda: "ok")
    assert client.request("ok") == "ok"


def test_handler_raising_ipc_call_error_answers_with_that_error(peers: tuple[Peer, Peer]) -> None:
    server, client = peers

    def open_scene(path: str) -> None:
        raise IpcCallError(IpcError.INVALID_PARAMS, f"no such file: {path}", {"path": path})

    server.register("scene.open", open_scene)
    exc = call_error(client.request, "scene.open", {"path": "/x.ma"})
    assert (exc.code, exc.message, exc.data) == (-32602, "no such file: /x.ma", {"path": "/x.ma"})
    assert exc.to_ipc_error() == IpcError(-32602, "no such file: /x.ma", {"path": "/x.ma"})
    copy = pickle.loads(pickle.dumps(exc))  # crosses process boundaries (executors, logs)
    assert (copy.error, copy.method, str(copy)) == (exc.error, "scene.open", str(exc))


def test_unregister_makes_the_method_unknown(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    server.register("tmp", lambda: 1)
    assert client.request("tmp") == 1
    assert server.unregister("tmp") is True
    assert server.unregister("tmp") is False
    assert call_error(client.request, "tmp").code == ErrorCode.METHOD_NOT_FOUND


# -- concurrency and ordering ----------------------------------------------------


def test_responses_out_of_order_are_matched_by_id(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    raw, client_channel = channels
    client = Peer(client_channel)
    futures = [client.request_async("job", {"n": n}) for n in range(5)]
    requests = [raw.receive(timeout=WAIT) for _ in range(5)]
    for req in reversed(requests):  # answer last-first
        raw.send(IpcMessage.response(req.id, req.data["n"] * 10))
    assert [f.result(timeout=WAIT) for f in futures] == [0, 10, 20, 30, 40]
    assert client.pending == 0


def test_concurrent_handlers_with_an_executor_finish_out_of_order(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    gates = {n: threading.Event() for n in range(3)}

    def job(n: int) -> int:
        assert gates[n].wait(WAIT)
        return n

    with ThreadPoolExecutor(max_workers=3) as pool:
        server = Peer(channels[0], executor=pool)
        client = Peer(channels[1])
        server.register("job", job)
        futures = [client.request_async("job", {"n": n}) for n in range(3)]
        waiting = {0, 1, 2}
        for n in (2, 0, 1):
            gates[n].set()
            assert futures[n].result(timeout=WAIT) == n
            waiting.discard(n)
            assert not any(futures[m].done() for m in waiting)
        server.close()


def test_many_threads_requesting_at_once_each_get_their_own_answer(
    peers: tuple[Peer, Peer],
) -> None:
    server, client = peers
    server.register("square", lambda x: x * x)
    results: dict[int, list[int]] = {}

    def worker(t: int) -> None:
        results[t] = [client.request("square", t * 1000 + i) for i in range(50)]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
    assert results == {t: [(t * 1000 + i) ** 2 for i in range(50)] for t in range(8)}
    assert client.pending == 0
    assert client.channel.metrics.latency_count >= 400


def test_a_handler_calling_back_needs_an_executor_and_says_so(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    server, client = Peer(channels[0]), Peer(channels[1])
    client.register("client.name", lambda: "tool")
    server.register("who", lambda: f"hello {server.request('client.name')}")
    # Inline, the call back would wait for the very thread that must read its reply.
    started = time.monotonic()
    exc = call_error(client.request, "who", timeout=WAIT)
    assert exc.code == ErrorCode.INTERNAL_ERROR and exc.data["type"] == "RuntimeError"
    assert "request_async" in exc.message
    assert time.monotonic() - started < WAIT  # at once, not after a timeout
    server.close()
    with ThreadPoolExecutor(max_workers=2) as pool:
        server = Peer(channels[0], executor=pool)
        server.register("who", lambda: f"hello {server.request('client.name')}")
        assert client.request("who") == "hello tool"
        server.close()


def test_await_from_asyncio(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    server.register("add", lambda a, b: a + b)

    async def main() -> list[Any]:
        calls = [asyncio.wrap_future(client.request_async("add", [i, i])) for i in range(10)]
        return await asyncio.gather(*calls)

    assert asyncio.run(main()) == [2 * i for i in range(10)]


def test_a_slow_handler_does_not_stop_another_connection() -> None:
    registry = HandlerRegistry()
    release = threading.Event()
    registry.register("slow", lambda: release.wait(WAIT))
    registry.register("fast", lambda: "fast")
    (s1, c1), (s2, c2) = ThreadChannel.pair("one"), ThreadChannel.pair("two")
    servers = [Peer(s1, registry=registry), Peer(s2, registry=registry)]
    slow = Peer(c1).request_async("slow")
    try:
        assert Peer(c2).request("fast", timeout=WAIT) == "fast"
        assert not slow.done()
    finally:
        release.set()
        assert slow.result(timeout=WAIT) is True
        for server in servers:
            server.channel.shutdown()


# -- timeouts, shutdown, crash --------------------------------------------------


def test_timeout_is_32001_and_a_late_reply_is_dropped(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    release = threading.Event()
    server.register("stuck", lambda: release.wait(WAIT))
    started = time.monotonic()
    exc = call_error(client.request, "stuck", timeout=0.2)
    assert exc.code == ErrorCode.TIMEOUT
    assert 0.2 <= time.monotonic() - started < WAIT
    assert client.pending == 0
    release.set()
    server.register("ok", lambda: "ok")
    assert client.request("ok") == "ok"  # the late reply did not confuse anything


def test_request_async_times_out_without_anyone_waiting(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    release = threading.Event()
    server.register("stuck", lambda: release.wait(WAIT))
    future = client.request_async("stuck", timeout=0.2)
    error = future.exception(timeout=WAIT)
    release.set()
    assert isinstance(error, IpcCallError) and error.code == ErrorCode.TIMEOUT
    assert client.pending == 0


def test_backend_crash_mid_request_fails_in_flight_requests_with_32002(
    peers: tuple[Peer, Peer],
) -> None:
    server, client = peers
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(WAIT)

    server.register("stuck", stuck)
    blocking: dict[str, BaseException] = {}

    def call() -> None:
        try:
            client.request("stuck", timeout=60)
        except IpcCallError as exc:
            blocking["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    future = client.request_async("stuck", timeout=60)
    assert entered.wait(WAIT)
    started = time.monotonic()
    server.channel.shutdown()  # the backend's end goes away
    caller.join(WAIT)
    assert not caller.is_alive()
    assert isinstance(blocking["error"], IpcCallError)
    assert blocking["error"].code == ErrorCode.SHUTTING_DOWN
    error = future.exception(timeout=WAIT)
    assert isinstance(error, IpcCallError) and error.code == ErrorCode.SHUTTING_DOWN
    assert time.monotonic() - started < WAIT  # promptly, not after the 60 s timeout
    release.set()
    # New requests fail at once, the same way.
    assert call_error(client.request, "stuck").code == ErrorCode.SHUTTING_DOWN
    assert client.request_async("stuck").exception(0).code == ErrorCode.SHUTTING_DOWN  # type: ignore[union-attr]


def test_bye_refuses_new_requests_and_waits_for_the_answers_in_flight(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    # Since 1.1 the sender of bye still answers what it accepted (PROTOCOL.md, Session 6).
    raw, client_channel = channels
    client = Peer(client_channel)
    future = client.request_async("scene.info", timeout=60)
    request = raw.receive(timeout=WAIT)
    assert request.method == "scene.info"
    raw.send(IpcMessage("bye"))
    assert wait_until(lambda: client.closed)  # delivered on the channel's thread
    error = call_error(client.request, "scene.info")  # at once, nothing sent
    assert error.code == ErrorCode.SHUTTING_DOWN and "bye" in error.message
    assert raw.try_receive() is None
    assert not future.done()
    raw.send(IpcMessage.response(request.id, {"nodes": 3}))
    assert future.result(timeout=WAIT) == {"nodes": 3}


def test_close_fails_pending_and_later_requests(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    release = threading.Event()
    server.register("stuck", lambda: release.wait(WAIT))
    future = client.request_async("stuck", timeout=60)
    client.close()
    assert future.exception(timeout=WAIT).code == ErrorCode.SHUTTING_DOWN  # type: ignore[union-attr]
    assert call_error(client.ping).code == ErrorCode.SHUTTING_DOWN
    assert client.closed and not client.channel.is_shutdown()  # the channel is its owner's
    release.set()


def test_requests_refused_by_a_shut_executor_are_32002(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    server = Peer(channels[0], executor=pool)
    server.register("x", lambda: 1)
    client = Peer(channels[1])
    assert client.request("x") == 1
    pool.shutdown()
    assert call_error(client.request, "x").code == ErrorCode.SHUTTING_DOWN


# -- events ----------------------------------------------------------------------


def test_events_reach_exact_and_wildcard_subscribers(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    seen: list[tuple[str, str, Any]] = []
    done = threading.Event()
    client.on("selection.changed", lambda e, d: seen.append(("exact", e, d)))
    client.on("selection.*", lambda e, d: seen.append(("selection.*", e, d)))
    stop = client.on("*", lambda e, d: seen.append(("*", e, d)))
    client.on("end", lambda e, d: done.set())
    server.emit("selection.changed", {"nodes": ["pCube1"]})
    server.emit("scene.saved", None)
    server.emit("selectionchanged", 1)  # not "selection.<something>"
    server.emit("end")
    assert done.wait(WAIT)
    assert seen == [
        ("exact", "selection.changed", {"nodes": ["pCube1"]}),
        ("selection.*", "selection.changed", {"nodes": ["pCube1"]}),
        ("*", "selection.changed", {"nodes": ["pCube1"]}),
        ("*", "scene.saved", {}),
        ("*", "selectionchanged", 1),
        ("*", "end", {}),
    ]
    seen.clear()
    done.clear()
    stop()
    server.emit("scene.saved", 2)
    server.emit("end")
    assert done.wait(WAIT)
    assert seen == []


def test_a_failing_event_handler_does_not_stop_the_others(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    got = threading.Event()
    client.on("tick", lambda e, d: 1 / 0)
    client.on("tick", lambda e, d: got.set())
    server.emit("tick")
    assert got.wait(WAIT)
    assert client.channel.metrics.errors == 1


# -- ping and ready ----------------------------------------------------------------


def test_ping_returns_the_round_trip_time(peers: tuple[Peer, Peer]) -> None:
    before = time.perf_counter()
    rtt = peers[1].ping()
    assert 0 < rtt <= time.perf_counter() - before


def test_peer_answers_pings_it_sees(channels: tuple[ThreadChannel, ThreadChannel]) -> None:
    Peer(channels[0])
    channels[1].send(IpcMessage.ping("p1"))
    pong = channels[1].receive(timeout=WAIT)
    assert (pong.type, pong.id) == ("pong", "p1")


def test_ping_times_out_when_nobody_answers(channels: tuple[ThreadChannel, ThreadChannel]) -> None:
    assert call_error(Peer(channels[1]).ping, timeout=0.1).code == ErrorCode.TIMEOUT


def test_announce_and_re_announce_when_handlers_change(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    server.register("scene.info", lambda: None)
    server.announce()
    assert client.wait_ready(WAIT)
    assert client.remote_handler_names == ["scene.info"]
    assert client.remote_info["peer"] == "server" and client.remote_info["protocol"] == 1
    server.register("scene.save", lambda: None)
    server.unregister("scene.info")
    # Each change sent a ready; the last one is what the client ends up with.
    client.ping()  # everything the server sent before the pong has been handled
    assert client.remote_handler_names == ["scene.save"]


def test_on_ready_hears_every_announcement(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    heard: list[list[str]] = []
    stop = client.on_ready(lambda info: heard.append(info["handlers"]))
    server.announce()
    server.register("a", lambda: None)
    client.ping()  # both readys were handled before the pong
    assert heard == [[], ["a"]]
    stop()
    server.register("b", lambda: None)
    client.ping()
    assert heard == [[], ["a"]] and client.remote_handler_names == ["a", "b"]


def test_no_ready_before_the_session_started(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    server_channel, raw = channels
    peer = Peer(server_channel, name="srv")
    peer.register("a", lambda: None)
    assert raw.try_receive() is None  # a hello-less client is sent no ready
    raw.send(IpcMessage("hello", {"protocol": 1, "peer": "tool", "token": "s3cret"}))
    ready = raw.receive(timeout=WAIT)
    assert ready.type == "ready" and ready.data["handlers"] == ["a"]
    assert peer.remote_info == {"protocol": 1, "peer": "tool"}  # the token is not kept
    peer.register("b", lambda: None)
    again = raw.receive(timeout=WAIT)
    assert again.type == "ready" and again.data["handlers"] == ["a", "b"]


def test_one_registry_serves_several_peers_and_each_announces(
    channels: tuple[ThreadChannel, ThreadChannel],
) -> None:
    registry = HandlerRegistry()
    other_a, other_b = ThreadChannel.pair("other")
    try:
        p1 = Peer(channels[0], registry=registry, session_started=True)
        p2 = Peer(other_a, registry=registry, session_started=True)
        registry.update({"x": lambda: "x", "y": lambda: "y"})  # one change, one ready each
        for raw in (channels[1], other_b):
            assert raw.receive(timeout=WAIT).data["handlers"] == ["x", "y"]
            assert raw.try_receive() is None
        assert Peer(other_b).request("y") == "y"
        assert p1.registry is p2.registry is registry
    finally:
        other_a.shutdown()


def test_round_trip_latency_is_recorded_in_the_channel_metrics(peers: tuple[Peer, Peer]) -> None:
    server, client = peers
    # The handler takes at least 0.1 s; only an RPC round trip includes that time
    # (queue latency, which the channel may also record, does not).
    server.register("slow", lambda: threading.Event().wait(0.1))
    client.request("slow")
    assert client.channel.metrics.max_latency >= 0.1
