"""``Responder``: answers a request with a registry's handler, and always sends a response.

The rules (also in :mod:`aurora_dcc.rpc.peer`): unknown method -32601;
arguments the handler's signature cannot take -32602, before it is called;
a handler that raises -32603 with ``{"type", "traceback"}`` in ``data``; a
handler that raises :class:`IpcCallError` answers with that error unchanged;
-32002 once the channel shuts down; a result that is not JSON -32603; a
response over the frame limit -32004 (an error response is first re-sent
with its message and ``data`` trimmed), so every request gets an answer.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from ..channel.base import IpcChannel
from ..errors import (
    ErrorCode,
    IpcChannelError,
    IpcError,
    MessageTooLarge,
    SerializationError,
    ShuttingDown,
    peer_repr,
)
from ..protocol.buffers import BlocksExhausted
from ..protocol.message import IpcMessage, IpcMessageType
from .call_error import IpcCallError
from .registry import HandlerRegistry

__all__ = ["Responder"]

log = logging.getLogger(__name__)

_RESPONSE = IpcMessageType.RESPONSE
# What a trimmed error keeps: a message's head, a traceback's tail (its last lines say most).
_TRIMMED_MESSAGE = 1000
_TRIMMED_TEXT = 2000


class Responder:
    """Serves the requests arriving on ``channel`` with ``registry``; ``name`` is for logs.

    A :class:`Peer` makes one and calls ``serve(request)`` on the thread that
    runs handlers (the delivering thread, or an executor's).

    Usage::

        responder = Responder(channel, registry, name="host")
        responder.serve(IpcMessage.request("scene.info", {}, "1"))   # sends the response
    """

    def __init__(self, channel: IpcChannel, registry: HandlerRegistry, name: str) -> None:
        self.channel = channel
        self.registry = registry
        self.name = name

    def serve(self, msg: IpcMessage) -> None:
        """Run the handler for request ``msg`` and send its response."""
        method = msg.method or ""
        entry = self.registry.entry(method)
        if entry is None:
            self.reply_error(
                msg, ErrorCode.METHOD_NOT_FOUND, f"method not found: {peer_repr(method)}"
            )
            return
        args, kwargs = entry.arguments(msg.data)
        try:
            entry.check(args, kwargs)
        except TypeError as exc:
            message = f"invalid params for {peer_repr(method)}: {exc}"
            self.reply_error(msg, ErrorCode.INVALID_PARAMS, message)
            return
        try:
            guard = self.channel.shutdown_state.begin_operation()
        except ShuttingDown:
            self.reply_error(msg, ErrorCode.SHUTTING_DOWN, "shutting down")
            return
        with guard:
            try:
                result = entry.fn(*args, **kwargs)
            except IpcCallError as exc:
                self._reply(msg, IpcMessage(_RESPONSE, id=msg.id, error=exc.error))
                return
            except Exception as exc:
                self.channel.metrics.record_error()
                log.warning("peer %r: handler %r raised", self.name, method, exc_info=True)
                details = {"type": type(exc).__name__, "traceback": traceback.format_exc()}
                self.reply_error(
                    msg,
                    ErrorCode.INTERNAL_ERROR,
                    f"{method} raised {type(exc).__name__}: {exc}",
                    details,
                )
                return
            self._reply(msg, IpcMessage.response(msg.id, result))

    def reply_error(self, msg: IpcMessage, code: int, message: str, data: Any = None) -> None:
        """Answer request ``msg`` with an error."""
        self._reply(msg, IpcMessage.error_response(msg.id, code, message, data))

    def _reply(self, request: IpcMessage, response: IpcMessage) -> None:
        try:
            self.channel.send(response)
        except SerializationError as exc:  # a result that is not JSON
            self.channel.metrics.record_error()
            self.send_owed(
                IpcMessage.error_response(
                    request.id, ErrorCode.INTERNAL_ERROR, f"{request.method}: bad result: {exc}"
                )
            )
        except MessageTooLarge as exc:
            self.channel.metrics.record_error()
            self._reply_too_large(request, response, exc)
        except BlocksExhausted as exc:  # the caller holds every block it may: it must not wait
            self.channel.metrics.record_error()
            self.send_owed(
                IpcMessage.error_response(
                    request.id,
                    ErrorCode.INTERNAL_ERROR,
                    f"{request.method}: result not sent: {exc}",
                )
            )
        except IpcChannelError as exc:
            log.debug(
                "peer %r: response to %s not sent: %s", self.name, peer_repr(request.method), exc
            )

    def _reply_too_large(
        self, request: IpcMessage, response: IpcMessage, exc: MessageTooLarge
    ) -> None:
        """Answer in place of a response over the frame limit: the caller must not wait."""
        method = peer_repr(request.method)
        error = response.error
        if error is None:
            log.warning("peer %r: result of %s not sent: %s", self.name, method, exc)
        else:
            log.warning("peer %r: error reply to %s trimmed: %s", self.name, method, exc)
            # The same error, smaller: first with a trimmed ``data``, then without it.
            for message_limit, keep_data in ((_TRIMMED_MESSAGE, True), (200, False)):
                data = _trim(error.data) if keep_data else None
                message = error.message
                if len(message) > message_limit:
                    message = message[:message_limit] + "..."
                trimmed = IpcError(error.code, message, data)
                try:
                    self.channel.send(IpcMessage(_RESPONSE, id=request.id, error=trimmed))
                    return
                except MessageTooLarge:
                    continue  # a small frame limit: smaller still, then the short error
                except IpcChannelError as send_exc:
                    log.debug("peer %r: trimmed error not sent: %s", self.name, send_exc)
                    return
        self.send_owed(
            IpcMessage.error_response(
                request.id, ErrorCode.MESSAGE_TOO_LARGE, f"reply to {method} too large"
            )
        )

    def send_owed(self, msg: IpcMessage) -> None:
        """Send what the protocol owes (a pong, a ready); a channel that is gone is not an error."""
        try:
            self.channel.send(msg)
        except IpcChannelError as exc:
            log.debug("peer %r: %s not sent: %s", self.name, msg.type.value, exc)


def _trim(value: Any, limit: int = _TRIMMED_TEXT) -> Any:
    """``value`` with long strings cut to their tail, and a dict reduced to its scalar entries."""
    if isinstance(value, str):
        return value if len(value) <= limit else "..." + value[-limit:]
    if isinstance(value, dict):
        # One level: a handler error's {"type", "traceback"} stays readable.
        return {
            str(k)[:100]: _trim(v, limit)
            for k, v in list(value.items())[:20]
            if v is None or isinstance(v, (str, int, float, bool))
        }
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return peer_repr(value)
