"""Connecting again while no server answers yet: ``RetryPolicy`` and ``retrying``.

Both socket sides (pure-Python and Qt) retry a connect the same way.

Usage::

    LocalSocketChannel.connect("auroraview_4711", retry=RetryPolicy(attempts=20))
    channel = retrying(5, lambda: open_once(address), "auroraview_4711")
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar, Union

from ..errors import Disconnected

__all__ = ["RetryPolicy", "retrying"]

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class RetryPolicy:
    """How ``LocalSocketChannel.connect`` retries while no server answers yet.

    ``attempts`` connection attempts in all, sleeping ``initial_delay`` after
    the first failure and doubling the sleep up to ``max_delay``. Only
    "nobody is there" failures are retried (no socket file, connection refused,
    the server vanished during the handshake); a refused token is not.

    Usage::

        LocalSocketChannel.connect("auroraview_4711", retry=RetryPolicy(attempts=20))
        LocalSocketChannel.connect("auroraview_4711", retry=5)   # 5 attempts, default delays
    """

    attempts: int = 10
    initial_delay: float = 0.05
    max_delay: float = 1.0

    def delays(self) -> list[float]:
        """The sleeps between attempts (``attempts - 1`` of them)."""
        out: list[float] = []
        delay = self.initial_delay
        for _ in range(max(0, self.attempts - 1)):
            out.append(min(delay, self.max_delay))
            delay *= 2
        return out


def retrying(
    retry: Union[RetryPolicy, int, None],
    attempt: Callable[[], _Result],
    name: str,
    sleep: Callable[[float], None] = time.sleep,
) -> _Result:
    """``attempt()``, tried again per ``retry`` while it raises ``Disconnected``.

    ``retry`` is what ``connect(retry=...)`` takes: a :class:`RetryPolicy`, a
    number of attempts, or ``None`` (one attempt). ``sleep`` waits between
    attempts (the Qt side passes one that keeps its event loop running).
    """
    policy = RetryPolicy(attempts=retry) if isinstance(retry, int) else retry
    delays = policy.delays() if policy is not None else []
    for delay in delays:
        try:
            return attempt()
        except Disconnected:
            log.debug("channel %r: no server yet, retrying in %.3fs", name, delay)
            sleep(delay)
    return attempt()
