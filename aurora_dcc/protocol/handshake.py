"""Session rules of docs/PROTOCOL.md shared by every socket transport.

The ``hello``/``ready`` handshake, token checking, replies to bad frames, and
the environment variables that carry a channel to a child process. Both the
Qt side and the pure-Python side use these, so they behave identically.

Usage (server side, on a connection's first frame)::

    error = check_hello(msg, token=server_token)
    if error is not None:
        send(IpcMessage(IpcMessageType.RESPONSE, id=msg.id, error=error)); close()
    else:
        send(ready_message(peer="maya-2025", handler_names=["scene.info"]))
"""

from __future__ import annotations

import hmac
import os
import sys
from typing import Any, Optional

from ..errors import ErrorCode, IpcError, SerializationError
from .message import IpcMessage, IpcMessageType

__all__ = [
    "PROTOCOL_VERSION",
    "check_hello",
    "default_peer_name",
    "error_reply",
    "hello_message",
    "ready_message",
]

PROTOCOL_VERSION = 1


def default_peer_name() -> str:
    """A readable name for this process in ``hello``/``ready`` (``python-<pid>``)."""
    base = os.path.splitext(os.path.basename(sys.argv[0] or "python"))[0] or "python"
    return f"{base}-{os.getpid()}"


def hello_message(
    token: Optional[str] = None,
    peer: Optional[str] = None,
    buffers: Optional[dict[str, Any]] = None,
) -> IpcMessage:
    """The client's ``hello``; ``buffers``: its shared-memory announcement (PROTOCOL.md,
    "Buffers (1.1)"), left out when ``None``."""
    data: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "peer": peer or default_peer_name(),
        "pid": os.getpid(),
    }
    if token is not None:
        data["token"] = token
    if buffers is not None:
        data["buffers"] = buffers
    return IpcMessage(IpcMessageType.HELLO, data)


def ready_message(
    peer: Optional[str] = None,
    handler_names: Optional[list[str]] = None,
    buffers: Optional[dict[str, Any]] = None,
) -> IpcMessage:
    """The server's ``ready`` (or a peer's re-announcement of its handlers); ``buffers``
    as in :func:`hello_message`."""
    data: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "peer": peer or default_peer_name(),
        "handlers": sorted(handler_names or []),
    }
    if buffers is not None:
        data["buffers"] = buffers
    return IpcMessage(IpcMessageType.READY, data)


def check_hello(msg: IpcMessage, token: Optional[str]) -> Optional[IpcError]:
    """``None`` if ``msg`` (a ``hello``) may open a session, else the error to answer.

    The token is compared in constant time. A server without a token accepts
    any token.
    """
    data = msg.data if isinstance(msg.data, dict) else {}
    protocol = data.get("protocol", PROTOCOL_VERSION)
    if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):
        return IpcError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"unsupported protocol version {protocol!r}; this server speaks {PROTOCOL_VERSION}",
        )
    if token is not None:
        offered = data.get("token")
        if not isinstance(offered, str) or not hmac.compare_digest(
            offered.encode("utf-8"), token.encode("utf-8")
        ):
            return IpcError(ErrorCode.UNAUTHORIZED, "unauthorized: wrong or missing token")
    return None


def error_reply(exc: SerializationError) -> IpcMessage:
    """The ``response`` that answers a frame that could not be decoded."""
    return IpcMessage.error_response(exc.message_id, exc.code, str(exc))
