"""Buffers as JSON values, without I/O: the inline form, escaping, and bad descriptors.

Every buffer type, nested anywhere a JSON value may stand, survives
``to_frame``/``from_json`` with its bytes, format and shape (as a memoryview,
or as a numpy array with its dtype); a message without buffers is encoded
exactly as before; a bad descriptor is refused with -32600/-32602.
"""

from __future__ import annotations

import array
import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_dcc.errors import ErrorCode, SerializationError
from aurora_dcc.protocol import codec
from aurora_dcc.protocol.buffer_values import release_buffers
from aurora_dcc.protocol.buffers import (
    BufferResolver,
    BufferSettings,
)
from aurora_dcc.protocol.message import IpcMessage

np = pytest.importorskip("numpy", reason="numpy is in the test extra")


def receiver(numpy: Any = None) -> BufferResolver:
    """A receiving side with ``numpy`` (False: memoryviews; numpy is installed here)."""
    resolver = BufferResolver()
    resolver.settings = BufferSettings(numpy=numpy)
    return resolver


def round_trip(msg: IpcMessage, numpy: Any = None) -> IpcMessage:
    return IpcMessage.from_json(msg.to_frame(), receiver(numpy))


def plain(value: Any) -> Any:
    """``value`` with every buffer made ``(format, shape, bytes)``, for comparison."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (str, int, float)) or value is None:
        return value
    view = memoryview(value)
    fmt = {"l": "q", "L": "Q"}.get(view.format, view.format)
    return (fmt, list(view.shape or ()), view.tobytes())


json_leaves = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=8)
buffers = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
    st.lists(st.floats(allow_nan=False, width=64), max_size=8).map(lambda v: array.array("d", v)),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8).map(lambda v: array.array("i", v)),
    st.lists(st.integers(0, 255), max_size=12).map(lambda v: np.array(v, dtype=np.uint8)),
    st.lists(st.floats(width=32, allow_nan=False), min_size=6, max_size=6).map(
        lambda v: np.array(v, dtype=np.float32).reshape(2, 3)
    ),
)
keys = st.text(max_size=6) | st.sampled_from(["$buffer", "$$buffer", "$", "$x", "buffers"])
values = st.recursive(
    json_leaves | buffers,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_buffer_type_nested_anywhere_comes_back_whole(value: Any) -> None:
    back = round_trip(IpcMessage.request("m", {"v": value}), numpy=False)
    assert plain(back.data) == plain({"v": value})
    event = IpcMessage.from_json(IpcMessage.event_frame("e", [value, value]), receiver(False))
    assert plain(event.data) == plain([value, value])


@settings(max_examples=100, deadline=None)
@given(values)
def test_numpy_receivers_get_arrays_with_dtype_and_shape(value: Any) -> None:
    back = round_trip(IpcMessage.response("1", {"v": value}))

    def check(sent: Any, got: Any) -> None:
        if isinstance(sent, dict):
            assert list(sent) == list(got)
            for key in sent:
                check(sent[key], got[key])
        elif isinstance(sent, (list, tuple)):
            assert len(sent) == len(got)
            for one, other in zip(sent, got):
                check(one, other)
        elif isinstance(sent, (str, int, float)) or sent is None:
            assert sent == got
        else:
            expected = np.asarray(memoryview(sent))
            assert isinstance(got, np.ndarray)
            assert (got.dtype, got.shape) == (expected.dtype, expected.shape)
            assert got.tobytes() == expected.tobytes()

    check({"v": value}, back.data)


@pytest.mark.parametrize(
    "array_value",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(12, dtype=np.float64).reshape(2, 3, 2),
        np.arange(6, dtype=np.int64),
        np.arange(6, dtype=np.uint64),
        np.arange(6, dtype=np.int16),
        np.array([True, False, True]),
        np.arange(4, dtype=np.float16),
        np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not C-contiguous: sent in C order
        np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1],  # strided
        np.zeros((0, 3), dtype=np.float32),
        np.array(3.5, dtype=np.float64),  # zero dimensions
        np.arange(3, dtype=">f4"),  # explicit byte order
    ],
    ids=lambda a: f"{a.dtype.str}{list(a.shape)}",
)
def test_numpy_dtypes_and_shapes_are_preserved(array_value: Any) -> None:
    got = round_trip(IpcMessage.request("m", {"a": array_value})).data["a"]
    assert got.dtype == array_value.dtype
    assert got.shape == array_value.shape
    assert np.array_equal(got, array_value)
    assert got.flags.writeable  # a private copy: the receiver may change it


def test_memoryview_receivers_get_format_and_shape() -> None:
    sent = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = round_trip(IpcMessage.request("m", [sent]), numpy=False).data[0]
    assert isinstance(got, memoryview)
    assert (got.format, got.shape) == ("f", (3, 4))
    assert got.tolist() == sent.tolist()
    assert release_buffers(got) == 0  # a copy holds no lease


def test_a_descriptor_without_a_shape_is_one_dimension() -> None:
    data = base64.b64encode(array.array("f", [1.0, 2.0]).tobytes()).decode()
    got = IpcMessage.from_json(
        frame_with({"$buffer": {"format": "f", "data": data}}), receiver(False)
    ).data
    assert (got.format, got.shape, got.tolist()) == ("f", (2,), [1.0, 2.0])


def test_a_format_memoryview_cannot_express_arrives_as_its_bytes() -> None:
    sent = np.array([1 + 2j, 3 - 4j], dtype=np.complex64)
    got = round_trip(IpcMessage.request("m", sent), numpy=False).data
    assert (got.format, got.shape, got.tobytes()) == ("B", (16,), sent.tobytes())


def test_numpy_receivers_get_complex_back() -> None:
    sent = np.array([1 + 2j, 3 - 4j], dtype=np.complex64)
    got = round_trip(IpcMessage.request("m", sent)).data
    assert got.dtype == np.complex64 and np.array_equal(got, sent)


def test_a_message_without_buffers_is_encoded_as_before() -> None:
    msg = IpcMessage.request("m", {"$buffer": {"data": "eA=="}, "a": [1, "x"]}, id="r1")
    frame = msg.to_frame()
    assert frame == codec.dumps_line(msg.to_dict())
    assert b'"buffers"' not in frame
    # and is not looked into by the receiver: its "$buffer" key is the user's
    assert IpcMessage.from_json(frame).data == {"$buffer": {"data": "eA=="}, "a": [1, "x"]}


def test_the_wire_form_is_what_protocol_md_says() -> None:
    frame = IpcMessage.request("m", {"p": array.array("f", [1.0, 2.0]), "$k": 1}, id="r1")
    wire = json.loads(frame.to_frame())
    assert wire["buffers"] == 1
    assert wire["data"]["$$k"] == 1  # a user's "$" key gets one more "$" in such a message
    body = wire["data"]["p"]["$buffer"]
    assert (body["format"], body["shape"]) == ("f", [2])
    assert base64.b64decode(body["data"]) == array.array("f", [1.0, 2.0]).tobytes()


def test_buffers_in_error_data_travel_too() -> None:
    msg = IpcMessage.error_response("1", -32603, "boom", {"raw": b"\x00\x01"})
    back = round_trip(msg, numpy=False)
    assert back.error is not None and back.error.data["raw"].tobytes() == b"\x00\x01"


def test_str_is_not_a_buffer_and_other_objects_still_fail() -> None:
    assert round_trip(IpcMessage.request("m", "abc")).data == "abc"
    with pytest.raises(SerializationError, match="set"):
        IpcMessage.request("m", {"s": {1, 2}, "b": b"x"}).to_frame()


def frame_with(data: Any, count: int = 1, msg_type: str = "request") -> bytes:
    obj = {"type": msg_type, "id": "r1", "data": data, "buffers": count}
    if msg_type == "request":
        obj["method"] = "m"
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("data", "count", "code"),
    [
        ({"$buffer": {"format": "B", "shape": [1], "data": "YQ=="}}, 2, ErrorCode.INVALID_MESSAGE),
        ({"$buffer": {"format": "B", "shape": [1], "data": "!!"}}, 1, ErrorCode.INVALID_PARAMS),
        ({"$buffer": {"format": "f", "shape": [2], "data": "YQ=="}}, 1, ErrorCode.INVALID_PARAMS),
        ({"$buffer": {"format": "B", "shape": [-1], "data": ""}}, 1, ErrorCode.INVALID_PARAMS),
        ({"$buffer": {"format": 3, "data": ""}}, 1, ErrorCode.INVALID_PARAMS),
        ({"$buffer": [1]}, 1, ErrorCode.INVALID_PARAMS),
        (
            {"$buffer": {"shm": "x", "offset": 0, "nbytes": 1, "lease": "1"}},
            1,
            ErrorCode.INVALID_PARAMS,
        ),
    ],
    ids=["count", "base64", "size", "shape", "format", "body", "shm-not-offered"],
)
def test_bad_descriptors_are_refused_with_the_request_id(data: Any, count: int, code: int) -> None:
    with pytest.raises(SerializationError) as caught:
        IpcMessage.from_json(frame_with(data, count))
    assert caught.value.code == code
    assert caught.value.message_id == "r1"


def test_a_response_with_a_bad_descriptor_fails_its_caller_here() -> None:
    msg = IpcMessage.from_json(frame_with({"$buffer": {"data": "!!"}}, 1, "response"))
    assert msg.id == "r1" and msg.error is not None
    assert msg.error.code == ErrorCode.INVALID_PARAMS


def test_a_resolver_hears_when_each_message_is_done() -> None:
    done: list[bool] = []

    class Counting(BufferResolver):
        def message_done(self) -> None:
            done.append(True)

    IpcMessage.from_json(IpcMessage.request("m", b"x").to_frame(), Counting())
    with pytest.raises(SerializationError):
        IpcMessage.from_json(frame_with({"$buffer": {"data": "!!"}}), Counting())
    IpcMessage.from_json(IpcMessage.request("m", 1).to_frame(), Counting())  # no buffers
    assert done == [True, True]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        BufferSettings(threshold=-1)
    with pytest.raises(ValueError):
        BufferSettings(wait_timeout=-1.0)


def test_an_in_process_channel_passes_buffers_by_reference() -> None:
    from aurora_dcc.channel.thread import ThreadChannel

    a, b = ThreadChannel.pair("buffers")
    payload = np.arange(10, dtype=np.float32)
    a.emit("frame", {"points": payload})
    assert b.receive(timeout=5.0).data["points"] is payload
