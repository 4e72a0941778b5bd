"""The plain data the engine's jobs pass around: inbound messages, publishes, per-store
command state, one group transaction's accumulators, and the counters.

Also the engine's tuning constants, shared by several jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from central.batches import CLOSING_TYPES, FastBatch, decode_fast
from central.customer_history import HistoryRow
from sync.messages import Digest
from sync.wire import MAX_PAYLOAD_BYTES

READ_TYPES = CLOSING_TYPES | {"alert"}
"""Event types whose ``data`` central reads: closing ones (§5.3) and the store's alerts."""

COMMAND_WINDOW = 2000
"""Commands sent beyond the store's acknowledged watermark before waiting for its ack."""

REPEATED_DROP_ALERT = 3

PROJECTION_INTERVAL = 1.0
"""Seconds the stock projection may lag the event log under load (readers never see it:
they add the unprojected events back, :func:`central.runs.stock_cells`)."""

PROJECTION_MAX_EVENTS = 200_000
"""Flush the projection sooner when this many applied events wait for it."""


class NotDecoded:
    """Marks an inbound message nobody has tried to decode yet."""


NOT_DECODED: Final = NotDecoded()


class Inbound(NamedTuple):
    """One MQTT message for :meth:`Core.process`; ``decoded`` is what :func:`predecode`
    made of it on the network thread (a plain 3-tuple means not tried)."""

    topic: str
    payload: bytes
    retained: bool
    decoded: FastBatch | NotDecoded | None = NOT_DECODED


def predecode(topic: str, payload: bytes) -> FastBatch | NotDecoded | None:
    """Decode an event batch ahead of the writer (pure; any thread). The writer then only
    sequences, stores and acknowledges it, and decoding overlaps its disk writes."""
    if not topic.endswith("/events") or len(payload) > MAX_PAYLOAD_BYTES:
        return NOT_DECODED
    return decode_fast(payload)


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(slots=True)
class StoreState:
    """Per-store command-delivery state. ``acked`` None = the store's watermark is unknown."""

    issued: int = 0
    acked: int | None = None
    sent_through: int = 0
    online: bool = False
    boot_id: str | None = None
    epoch: str | None = None
    last_progress: float = 0.0
    last_goback: float = -1e9
    quarantined: int = 0
    pending_digest: Digest | None = None
    last_resync_cseq: int = 0


@dataclass(slots=True)
class Group:
    """What one group transaction accumulates before its flush."""

    ts: str
    now: float
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    epochs: set[tuple[str, str]] = field(default_factory=set)
    acks: dict[tuple[str, str], None] = field(default_factory=dict)
    alerts: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    drops: dict[tuple[str, str], int] = field(default_factory=dict)
    closed_reservations: list[tuple[str, str, str, str]] = field(default_factory=list)
    closed_counts: list[tuple[str, str]] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    sends: list[tuple[str, int]] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    contacts: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Counters:
    """The engine's running totals (``/metrics`` and ``GET /status`` print them by these
    names); :meth:`central.core.Core.counters` hands out a copy."""

    messages: int = 0
    events_applied: int = 0
    events_duplicate: int = 0
    events_quarantined: int = 0
    drops: int = 0
    acks: int = 0
    groups: int = 0
