"""Per-channel counters and their JSON-serialisable snapshot.

Transports update an ``IpcChannelMetrics`` under the lock they already hold
for sending or receiving, so the counters cost a few attribute writes and take
no lock of their own.

Usage::

    snap = channel.metrics.snapshot()
    snap.messages_sent, snap.avg_latency_ms, snap.peak_queue_length
    json.dumps(snap.to_dict())
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

__all__ = ["IpcChannelMetrics", "MetricsSnapshot"]


@dataclass(frozen=True)
class MetricsSnapshot:
    """A frozen copy of a channel's counters at one moment.

    Usage::

        snap = channel.metrics.snapshot()
        snap.messages_sent, snap.to_dict()["avg_latency_ms"]
    """

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    errors: int
    avg_latency_ms: float
    max_latency_ms: float
    queue_length: int
    peak_queue_length: int
    created_at: float
    uptime_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IpcChannelMetrics:
    """Counters of one channel: messages, bytes, errors, latency, queue length.

    ``bytes_*`` count encoded bytes on the wire; an in-process channel that
    never encodes (``ThreadChannel``) leaves them at zero. Latency is measured
    where a transport knows when a message was sent (in-process queues, RPC
    round trips).

    Usage::

        channel.metrics.record_error()            # a transport counting a failure
        channel.metrics.snapshot().errors         # 1
    """

    __slots__ = (
        "_created_mono",
        "_derive",
        "_latency_total",
        "_queue_length",
        "bytes_received",
        "bytes_sent",
        "created_at",
        "errors",
        "latency_count",
        "max_latency",
        "messages_received",
        "messages_sent",
        "peak_queue_length",
    )

    def __init__(
        self,
        queue_length: Optional[Callable[[], int]] = None,
        derive: Optional[Callable[[IpcChannelMetrics], None]] = None,
    ) -> None:
        """``queue_length`` reports the current queue; ``derive(metrics)``, called
        by ``snapshot()`` first, fills counters a transport derives instead of
        updating them per message (``ThreadChannel`` counts only its takes)."""
        self.messages_sent = 0
        self.messages_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.errors = 0
        self._latency_total = 0.0
        self.latency_count = 0
        self.max_latency = 0.0
        self.peak_queue_length = 0
        self._queue_length = queue_length
        self._derive = derive
        self.created_at = time.time()
        self._created_mono = time.monotonic()

    def record_sent(self, nbytes: int = 0) -> None:
        self.messages_sent += 1
        self.bytes_sent += nbytes

    def record_received(self, nbytes: int = 0) -> None:
        self.messages_received += 1
        self.bytes_received += nbytes

    def record_latency(self, seconds: float) -> None:
        self._latency_total += seconds
        self.latency_count += 1
        if seconds > self.max_latency:
            self.max_latency = seconds

    def record_error(self) -> None:
        self.errors += 1

    def observe_queue_length(self, length: int) -> None:
        if length > self.peak_queue_length:
            self.peak_queue_length = length

    def snapshot(self) -> MetricsSnapshot:
        if self._derive is not None:
            self._derive(self)
        count = self.latency_count
        return MetricsSnapshot(
            messages_sent=self.messages_sent,
            messages_received=self.messages_received,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            errors=self.errors,
            avg_latency_ms=(self._latency_total / count * 1000.0) if count else 0.0,
            max_latency_ms=self.max_latency * 1000.0,
            queue_length=self._queue_length() if self._queue_length else 0,
            peak_queue_length=self.peak_queue_length,
            created_at=self.created_at,
            uptime_s=time.monotonic() - self._created_mono,
        )
