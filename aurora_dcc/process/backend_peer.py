"""The backend side of packed mode: :func:`connect_backend` and its :class:`BackendPeer`.

A backend started by :func:`~aurora_dcc.process.backend.spawn_backend` reads
the channel and token its host put in its environment, connects, registers
its handlers and serves until the host goes away.

Usage (backend.py)::

    peer = connect_backend()

    @peer.handler("add")
    def add(a, b):
        return a + b

    peer.serve_forever()                         # until the host goes away
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Mapping
from typing import Optional

from ..channel.base import IpcChannel
from ..errors import ChannelTimeout, ErrorCode, IpcChannelError, ShuttingDown
from ..rpc.peer import DEFAULT_TIMEOUT, Peer
from ..rpc.registry import HandlerRegistry
from .environment import ENV_CHANNEL, ENV_MODE, ENV_TOKEN, IpcMode
from .factory import IpcChannelFactory, auto_detect

__all__ = ["READY_TIMEOUT", "BackendError", "BackendPeer", "connect_backend", "wait_closed"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0


class BackendError(IpcChannelError):
    """A backend could not start, exited early, or never became ready (or has no host).

    ``returncode`` is its exit code (``None`` while it still ran; negative: the
    signal that killed it on Unix), ``stderr_tail`` the end of what it wrote to
    stderr. Both are in the message too.

    Usage::

        try:
            backend = spawn_backend(["python", "backend.py"])
        except BackendError as exc:
            log.error("backend failed (%s): %s", exc.returncode, exc.stderr_tail)
    """

    code = ErrorCode.SHUTTING_DOWN

    def __init__(
        self, message: str, *, returncode: Optional[int] = None, stderr_tail: str = ""
    ) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if returncode is not None:
            message += f" (exit code {returncode})"
        if stderr_tail:
            message += f"; its stderr ends with:\n{stderr_tail.rstrip()}"
        super().__init__(message)


def wait_closed(channel: IpcChannel, timeout: Optional[float] = None) -> bool:
    """Wait until ``channel``'s connection has ended; False if ``timeout`` passed first.

    Works for a channel whose messages go to ``on_message`` handlers (a
    ``Peer``): its inbox stays empty, so ``receive`` returns only by raising
    once the connection is gone. Anything that does land in the inbox is dropped.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            msg = channel.receive(remaining)
        except (ConnectionError, ShuttingDown):
            return True
        except ChannelTimeout:
            return False
        log.debug("channel %r: %s message without a handler dropped", channel.name, msg.type)


class BackendPeer(Peer):
    """The :class:`Peer` a backend gets from :func:`connect_backend`.

    Usage::

        peer = connect_backend()
        peer.register("add", lambda a, b: a + b)
        peer.emit("progress", {"done": 1})
        peer.serve_forever()          # announce, then return once the host disconnects
    """

    def serve_forever(self, timeout: Optional[float] = None) -> bool:
        """Announce the handlers (once), then wait for the host to disconnect.

        Returns True when the connection closed (the channel is then closed
        too), False when ``timeout`` passed first.
        """
        if not self.session_started:
            self.announce()
        if not wait_closed(self.channel, timeout):
            return False
        self.channel.close()
        return True


def connect_backend(
    registry: Optional[HandlerRegistry] = None,
    *,
    name: Optional[str] = None,
    timeout: float = READY_TIMEOUT,
    request_timeout: float = DEFAULT_TIMEOUT,
    executor: Optional[concurrent.futures.Executor] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> BackendPeer:
    """Connect this process (a backend started by ``spawn_backend``) to its host.

    Reads the environment (``environ`` defaults to ``os.environ``); in legacy
    mode takes over stdin/stdout (``print()`` then goes to stderr). Serves
    ``registry`` (a new one if omitted). Raises :class:`BackendError` when the
    environment names no host, and the transport's errors (``Disconnected``,
    ``Unauthorized``, ``ChannelTimeout``) when it cannot connect within
    ``timeout`` seconds. Handlers run on the channel's reader thread unless
    ``executor`` is given; announce them with ``serve_forever()`` (or
    ``announce()``) once registered.
    """
    env = os.environ if environ is None else environ
    mode = auto_detect(env)
    if mode is IpcMode.LEGACY:
        channel = IpcChannelFactory.create(mode, "stdio", timeout=timeout)
    elif env.get(ENV_CHANNEL):
        channel = IpcChannelFactory.create(
            IpcMode.LOCAL_SOCKET, env[ENV_CHANNEL], token=env.get(ENV_TOKEN), timeout=timeout
        )
    else:
        raise BackendError(
            f"not started as a backend: {ENV_CHANNEL} is not set "
            f"(and {ENV_MODE} is not 'legacy'); start this script with spawn_backend()"
        )
    return BackendPeer(channel, registry, name=name, timeout=request_timeout, executor=executor)
