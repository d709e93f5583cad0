"""FrameDecoder and StreamSession: the protocol rules both socket sides share."""

from __future__ import annotations

import os
import socket
import tracemalloc

import pytest

from aurora_dcc import ErrorCode, IpcMessage, IpcMessageType
from aurora_dcc.errors import MessageTooLarge
from aurora_dcc.protocol import codec as codec
from aurora_dcc.protocol.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from aurora_dcc.transport.address import AddressInUse, claim_address, resolve_address
from aurora_dcc.transport.connection import StreamSession


def test_partial_frames_are_kept_across_reads_and_many_frames_per_read_are_split() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b'{"type":"pi') == []
    assert decoder.feed(b'ng"}\n{"type":"pong"}\r\n\n{"ty') == [
        b'{"type":"ping"}',
        b'{"type":"pong"}',
    ]
    assert decoder.pending == 4
    assert decoder.feed(b'pe":"bye"}\n') == [b'{"type":"bye"}']


def test_oversized_frame_is_refused_without_buffering_it_whole() -> None:
    decoder = FrameDecoder(max_frame=1024)
    chunk = b"x" * 4096
    tracemalloc.start()
    try:
        for _ in range(2048):  # 8 MiB streamed at a 1 KiB limit
            decoder.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.overflowed
    assert decoder.pending == 0
    assert peak < 256 * 1024


def test_complete_frames_before_an_oversized_one_are_kept() -> None:
    decoder = FrameDecoder(max_frame=20)
    frames = decoder.feed(b'{"type":"ping"}\n' + b"y" * 50 + b'\n{"type":"bye"}\n')
    assert frames == [b'{"type":"ping"}']
    assert decoder.overflowed
    assert decoder.feed(b'{"type":"bye"}\n') == []


def test_encode_frame_refuses_a_message_over_the_limit() -> None:
    assert encode_frame(IpcMessage("bye")).endswith(b"\n")
    with pytest.raises(MessageTooLarge, match="exceeds"):
        encode_frame(IpcMessage("data", "z" * 100), max_frame=50)


def handshake(token: str | None = None, offered: str | None = None) -> tuple[StreamSession, ...]:
    server = StreamSession(server=True, token=token, list_handler_names=lambda: ["scene.info"])
    client = StreamSession(server=False, token=offered)
    client.start()
    assert server.feed(client.take_output()) == []
    delivered = client.feed(server.take_output())
    assert [m.type for m in delivered] == ["ready"] or client.refusal is not None
    return server, client


def test_handshake_announces_handlers_and_checks_the_token() -> None:
    server, client = handshake(token="s3cret", offered="s3cret")
    assert server.established and client.established
    assert client.peer_info["handlers"] == ["scene.info"]
    assert server.peer_info["pid"] == os.getpid()


def test_wrong_token_is_refused_with_unauthorized_and_closed() -> None:
    server, client = handshake(token="s3cret", offered="guess")
    assert server.must_close and not server.established
    assert client.refusal is not None and client.refusal.code == ErrorCode.UNAUTHORIZED
    assert "unauthorized" in str(client.refusal_exception())


def test_unsupported_protocol_is_refused() -> None:
    server = StreamSession(server=True)
    server.feed(b'{"type":"hello","data":{"protocol":2}}\n')
    reply = IpcMessage.from_json(server.take_output())
    assert reply.error is not None and reply.error.code == ErrorCode.UNSUPPORTED_PROTOCOL
    assert server.must_close


def test_tokenless_server_accepts_a_client_that_skips_hello() -> None:
    server = StreamSession(server=True)
    delivered = server.feed(b'{"type":"request","id":"1","method":"scene.info"}\n')
    assert [m.method for m in delivered] == ["scene.info"]
    assert server.take_output() == b""  # no ready for hello-less clients


def test_token_server_refuses_a_client_that_skips_hello() -> None:
    server = StreamSession(server=True, token="t")
    assert server.feed(b'{"type":"request","id":"1","method":"scene.info"}\n') == []
    assert IpcMessage.from_json(server.take_output()).error.code == ErrorCode.UNAUTHORIZED  # type: ignore[union-attr]
    assert server.must_close


def test_bad_frames_are_answered_and_the_session_goes_on() -> None:
    server = StreamSession(server=True)
    delivered = server.feed(
        b"garbage\n\xff\xfe\n[1,2]\n"
        b'{"id":"x"}\n{"type":"ping","id":"p"}\n{"type":"event","event":"ok"}\n'
    )
    assert [m.event for m in delivered] == ["ok"]
    replies = [IpcMessage.from_json(line) for line in server.take_output().splitlines()]
    assert [r.error.code if r.error else r.type.value for r in replies] == [
        ErrorCode.PARSE_ERROR,
        ErrorCode.PARSE_ERROR,
        ErrorCode.INVALID_MESSAGE,
        ErrorCode.INVALID_MESSAGE,
        "pong",
    ]
    assert replies[3].id == "x" and replies[4].id == "p"
    assert server.metrics.snapshot().errors == 4
    assert not server.must_close


def test_frame_over_the_limit_is_answered_with_message_too_large_and_closed() -> None:
    server = StreamSession(server=True, max_frame=64)
    server.feed(b'{"type":"data","data":"' + b"a" * 100)
    reply = IpcMessage.from_json(server.take_output())
    assert reply.error is not None and reply.error.code == ErrorCode.MESSAGE_TOO_LARGE
    assert server.must_close


def test_resolve_address_puts_relative_names_in_the_private_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", f"{tmp_path}/")
    private = os.path.join(str(tmp_path), f"aurora_dcc-{os.geteuid()}")
    assert resolve_address("auroraview_4711") == os.path.join(private, "auroraview_4711")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert resolve_address("a") == os.path.join(str(tmp_path), "aurora_dcc", "a")
    assert resolve_address("/run/x.sock") == "/run/x.sock"
    with pytest.raises(ValueError, match="longer"):
        resolve_address("n" * 200)


def test_claim_address_replaces_a_stale_socket_but_never_a_live_one(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "chan")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a crashed server leaves its file behind
    claim = claim_address(path)
    assert claim.address == path
    assert not os.path.exists(path)
    claim.release()
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(AddressInUse, match="already served by a live server"):
            claim_address(path)
        assert os.path.exists(path)
    finally:
        live.close()


def test_codec_backend_is_chosen_once() -> None:
    assert codec.BACKEND in ("orjson", "json")
    assert codec.loads(codec.dumps({"a": [1, "é"]})) == {"a": [1, "é"]}


def test_a_reply_over_the_limit_is_answered_short_and_the_read_goes_on() -> None:
    """A ping whose id fits the limit, but whose pong (with its ``data``) does not."""
    server = StreamSession(server=True)
    huge_id = "i" * (DEFAULT_MAX_FRAME - len('{"type":"ping","id":""}'))
    ping = b'{"type":"ping","id":"' + huge_id.encode() + b'"}'
    assert len(ping) == DEFAULT_MAX_FRAME
    server.feed(ping + b'\n{"type":"ping","id":"after"}\n')
    replies = [IpcMessage.from_json(line) for line in server.take_output().splitlines()]
    assert len(replies) == 2
    assert replies[0].error is not None
    assert replies[0].error.code == ErrorCode.MESSAGE_TOO_LARGE
    assert (replies[1].type, replies[1].id) == (IpcMessageType.PONG, "after")
    assert not server.must_close
