"""Edges of the JSON codec (docs/PROTOCOL.md, "Clarifications (1.1)"): lone surrogates,
integers out of range, NaN; with orjson and with the standard-library fallback, and
against both servers, which must answer such a frame and go on with the rest of the read."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from rawclient import RawClient
from support import wait_until

from aurora_dcc import ThreadChannel
from aurora_dcc.errors import PEER_REPR_LIMIT, IpcError, SerializationError, peer_repr
from aurora_dcc.protocol import codec
from aurora_dcc.protocol.message import IpcMessage
from aurora_dcc.rpc.peer import Peer

HAVE_ORJSON = importlib.util.find_spec("orjson") is not None
CODECS = [
    pytest.param("default", marks=pytest.mark.skipif(not HAVE_ORJSON, reason="needs orjson")),
    "json",
]

# Each line: a frame the codecs must refuse, and the code of the reply it gets.
REFUSED_FRAMES = [
    (b'{"type":"ping","id":"\\ud800"}', -32700),  # a lone high surrogate
    (b'{"type":"ping","id":"\\udc00x"}', -32700),  # a lone low surrogate
    (b'{"type":"event","event":"e","data":-9223372036854775809}', -32700),
    (b'{"type":"event","event":"e","data":[18446744073709551616]}', -32700),
    (b'{"type":"event","event":"e","data":NaN}', -32700),
]
ACCEPTED = [
    (b'"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
    (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text
    (b"-9223372036854775808", -(2**63)),
    (b"18446744073709551615", 2**64 - 1),
    (b'"12345678901234567890123"', "12345678901234567890123"),  # digits in a string
    (b"[1.2345678901234567890123]", [1.2345678901234567]),  # a float: any precision
]

# Runs in a child: the codec as a process without orjson (or with it) sees it.
_CODEC_CHILD = r"""
import json, sys
if sys.argv[1] == "json":
    sys.modules["orjson"] = None
from aurora_dcc.protocol import codec
out = {"backend": codec.BACKEND, "loads": [], "dumps": []}
for raw in json.loads(sys.argv[2]):
    try:
        value = codec.loads(raw.encode("utf-8", "surrogatepass"))
        out["loads"].append(["ok", json.dumps(value)])
    except codec.DecodeError as exc:
        out["loads"].append(["refused", type(exc).__name__])
for value in (2**64, -(2**63) - 1, [10**30], "\ud800", 2**64 - 1, -(2**63)):
    try:
        out["dumps"].append(["ok", codec.dumps(value).decode()])
    except codec.EncodeError as exc:
        out["dumps"].append(["refused", type(exc).__name__])
print(json.dumps(out))
"""


def run_codec(choice: str, raws: list[bytes]) -> dict[str, Any]:
    texts = [raw.decode("utf-8") for raw in raws]
    proc = subprocess.run(
        [sys.executable, "-c", _CODEC_CHILD, choice, json.dumps(texts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.subprocess
@pytest.mark.parametrize("choice", CODECS)
def test_both_codecs_refuse_and_accept_the_same_inputs(choice: str) -> None:
    refused = [raw for raw, _ in REFUSED_FRAMES]
    accepted = [raw for raw, _ in ACCEPTED]
    result = run_codec(choice, refused + accepted)
    assert result["backend"] == ("json" if choice == "json" else "orjson")
    assert [kind for kind, _ in result["loads"][: len(refused)]] == ["refused"] * len(refused)
    decoded = [json.loads(text) for _, text in result["loads"][len(refused) :]]
    assert decoded == [value for _, value in ACCEPTED]
    assert [kind for kind, _ in result["dumps"]] == ["refused"] * 4 + ["ok"] * 2
    assert result["dumps"][4:] == [["ok", str(2**64 - 1)], ["ok", str(-(2**63))]]


@pytest.mark.parametrize(("frame", "code"), REFUSED_FRAMES)
def test_a_message_with_an_edge_value_is_a_parse_error(frame: bytes, code: int) -> None:
    with pytest.raises(SerializationError) as info:
        IpcMessage.from_json(frame)
    assert info.value.code == code


def test_sending_an_integer_out_of_range_raises_serialization_error() -> None:
    with pytest.raises(SerializationError):
        IpcMessage.request("m", {"n": 2**64}).to_frame()
    with pytest.raises(SerializationError):
        IpcMessage.event_frame("e", [-(2**63) - 1])
    assert codec.loads(IpcMessage.response("1", {"n": 2**64 - 1}).to_bytes())["data"] == {
        "n": 2**64 - 1
    }


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["python", "qt"])
@pytest.mark.parametrize("choice", CODECS)
def test_servers_answer_a_bad_frame_and_the_rest_of_the_read(
    kind: str, choice: str, channel_name: str, children: Any
) -> None:
    if kind == "qt" and importlib.util.find_spec("qtpy") is None:
        pytest.skip("the Qt server needs qtpy")
    proc = children.spawn(
        "codec_server.py",
        kind,
        channel_name,
        choice,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line == ["listening", "json" if choice == "json" else "orjson"]
    with RawClient.connect(channel_name) as raw:
        assert raw.hello()["type"] == "ready"
        # One write: a ping, every refused frame, a ping. All answered, in frame order.
        frames = [b'{"type":"ping","id":"first"}']
        frames += [frame for frame, _ in REFUSED_FRAMES]
        frames += [b'{"type":"ping","id":"last"}']
        raw.send_raw(b"\n".join(frames) + b"\n")
        assert raw.recv(timeout=10.0) == {"type": "pong", "id": "first", "data": {}}
        for _, code in REFUSED_FRAMES:
            reply = raw.recv(timeout=10.0)
            assert reply["type"] == "response" and "id" not in reply, reply
            assert reply["error"]["code"] == code
        assert raw.recv(timeout=10.0) == {"type": "pong", "id": "last", "data": {}}
    assert children.stop(proc) == 0


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_peer_data_in_reprs_is_bounded_in_depth_and_size() -> None:
    deep, huge = _deep(100_000), "x" * 10_000_000
    error = IpcError(-32603, huge, {"nested": deep})
    message = IpcMessage.error_response("1", -32603, huge, deep)
    for text in (repr(error), repr(message), peer_repr(deep), peer_repr(huge)):
        assert len(text) <= 2 * PEER_REPR_LIMIT + 100


def test_a_deeply_nested_error_from_the_peer_is_logged_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = ThreadChannel.pair("deep-error")
    peer = Peer(a, name="host")
    try:
        with caplog.at_level(logging.WARNING, logger="aurora_dcc.rpc"):
            b.send(IpcMessage.error_response(None, -32603, "boom", {"data": _deep(100_000)}))
            assert wait_until(lambda: any("boom" in r.getMessage() for r in caplog.records))
        assert all(len(record.getMessage()) < 4 * PEER_REPR_LIMIT for record in caplog.records)
    finally:
        peer.close()
        a.close()
        b.close()
