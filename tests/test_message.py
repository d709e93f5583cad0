"""IpcMessage encoding: round trips, validation, and the decoder's contract."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_dcc import ErrorCode, IpcMessage, IpcMessageType
from aurora_dcc.errors import IpcError, SerializationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
optional_text = st.none() | st.text(max_size=20)


@st.composite
def messages(draw: st.DrawFn) -> IpcMessage:
    msg_type = draw(st.sampled_from(list(IpcMessageType)))
    method = draw(st.text(min_size=1, max_size=20)) if msg_type == "request" else None
    event = draw(st.text(min_size=1, max_size=20)) if msg_type == "event" else None
    error = None
    if msg_type == "response" and draw(st.booleans()):
        error = IpcError(
            draw(st.integers(-33000, 0)), draw(st.text(max_size=30)), draw(json_values)
        )
    return IpcMessage(
        msg_type,
        data=draw(json_values),
        id=draw(optional_text),
        method=method or draw(optional_text),
        event=event or draw(optional_text),
        error=error,
    )


@pytest.mark.parametrize(
    "msg",
    [
        IpcMessage.request("scene.info", {"verbose": True}),
        IpcMessage.response("r1", {"nodes": ["pCube1"]}),
        IpcMessage.error_response("r2", ErrorCode.METHOD_NOT_FOUND, "no such method", {"x": 1}),
        IpcMessage.event_message("selection.changed", {"nodes": []}),
        IpcMessage.ping(),
        IpcMessage.pong("p1"),
        IpcMessage(IpcMessageType.DATA, [1, 2, 3]),
        IpcMessage(IpcMessageType.HELLO, {"protocol": 1, "token": "t", "peer": "maya", "pid": 1}),
        IpcMessage(IpcMessageType.READY, {"protocol": 1, "handlers": ["scene.info"]}),
        IpcMessage(IpcMessageType.BYE),
    ],
    ids=lambda m: m.type.value,
)
def test_every_message_type_round_trips(msg: IpcMessage) -> None:
    assert IpcMessage.from_json(msg.to_json()) == msg
    assert IpcMessage.from_json(msg.to_bytes() + b"\n") == msg


def test_absent_fields_are_left_out_and_data_defaults_to_empty_object() -> None:
    wire = IpcMessage.ping("p1").to_dict()
    assert wire == {"type": "ping", "id": "p1", "data": {}}
    assert IpcMessage.from_json(b'{"type":"bye"}').data == {}
    assert IpcMessage.from_json(b'{"type":"event","event":"e","data":null}').data == {}


def test_unknown_fields_are_ignored() -> None:
    msg = IpcMessage.from_json(b'{"type":"event","event":"e","future":{"x":1}}')
    assert msg.event == "e"


def test_type_is_a_str_enum() -> None:
    msg = IpcMessage.from_json(b'{"type":"pong"}')
    assert msg.type is IpcMessageType.PONG
    assert msg.type == "pong"


def test_message_ids_are_unique() -> None:
    ids = {IpcMessage.request("m").id for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        (b"not json", ErrorCode.PARSE_ERROR, "not valid JSON"),
        (b"\xff\xfe{}", ErrorCode.PARSE_ERROR, "not valid JSON"),
        (b"[1, 2]", ErrorCode.INVALID_MESSAGE, "not an array"),
        (b'"text"', ErrorCode.INVALID_MESSAGE, "JSON object"),
        (b"{}", ErrorCode.INVALID_MESSAGE, "missing field 'type'"),
        (b'{"type": 3}', ErrorCode.INVALID_MESSAGE, "'type' must be a string"),
        (b'{"type": "shout"}', ErrorCode.INVALID_MESSAGE, "unknown message type"),
        (b'{"type": "ping", "id": 7}', ErrorCode.INVALID_MESSAGE, "'id' must be a string"),
        (b'{"type": "request", "id": "a"}', ErrorCode.INVALID_MESSAGE, "needs a string 'method'"),
        (b'{"type": "event", "event": 1}', ErrorCode.INVALID_MESSAGE, "'event' must be a string"),
        (b'{"type": "response", "error": "bad"}', ErrorCode.INVALID_MESSAGE, "'error' must be"),
        (
            b'{"type": "response", "error": {"code": "x", "message": "m"}}',
            ErrorCode.INVALID_MESSAGE,
            "'error.code'",
        ),
    ],
)
def test_bad_input_raises_serialization_error_naming_the_problem(
    raw: bytes, code: int, reason: str
) -> None:
    with pytest.raises(SerializationError, match=reason) as info:
        IpcMessage.from_json(raw)
    assert info.value.code == code


def test_offending_id_is_kept_when_it_can_be_read() -> None:
    with pytest.raises(SerializationError) as info:
        IpcMessage.from_json(b'{"id": "r9", "method": "x"}')
    assert info.value.message_id == "r9"


def test_unencodable_payload_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot encode"):
        IpcMessage.event_message("e", {"obj": object()}).to_bytes()


def test_constructor_rejects_unknown_type() -> None:
    with pytest.raises(SerializationError):
        IpcMessage("shout")


@settings(max_examples=300, deadline=None)
@given(messages())
def test_any_message_survives_encode_decode(msg: IpcMessage) -> None:
    decoded = IpcMessage.from_json(msg.to_bytes())
    assert decoded == msg
    assert b"\n" not in msg.to_bytes()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_serialization_error(raw: bytes) -> None:
    try:
        msg = IpcMessage.from_json(raw)
    except SerializationError as exc:
        assert exc.code in (ErrorCode.PARSE_ERROR, ErrorCode.INVALID_MESSAGE)
    else:
        assert isinstance(msg, IpcMessage)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_values_decode_or_raise_serialization_error(value: object) -> None:
    from aurora_dcc.protocol import codec as codec

    try:
        IpcMessage.from_json(codec.dumps(value))
    except SerializationError as exc:
        assert exc.code == ErrorCode.INVALID_MESSAGE


def test_event_frame_is_the_frame_of_event_message() -> None:
    frame = IpcMessage.event_frame("scene.saved", {"path": "/shots/a.ma"})
    assert frame.endswith(b"\n")
    assert IpcMessage.from_json(frame) == IpcMessage.event_message(
        "scene.saved", {"path": "/shots/a.ma"}
    )
    assert IpcMessage.from_json(IpcMessage.event_frame("tick")).data == {}
    with pytest.raises(SerializationError, match="cannot encode event message"):
        IpcMessage.event_frame("bad", {"not json": {1, 2}})


def test_errors_about_a_frame_quote_its_fields_bounded() -> None:
    """The error text for a 1 MB unknown ``type`` stays short: the reply must fit any limit."""
    with pytest.raises(SerializationError) as info:
        IpcMessage.from_json(b'{"type":"' + b"t" * 1_000_000 + b'","id":"x"}')
    assert info.value.message_id == "x"
    assert len(str(info.value)) < 2_000
    assert len(repr(IpcMessage.request("m", {"blob": "b" * 1_000_000}))) < 2_000
