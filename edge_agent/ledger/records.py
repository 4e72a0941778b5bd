"""The ledger's value types: event keys (epoch ordinal + seq) and what reads return.

Shared by the writer (:mod:`edge_agent.ledger.tx`), the read queries
(:mod:`edge_agent.ledger.queries`) and the facade (:mod:`edge_agent.ledger.core`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sync.store_port import EpochMark

SEQ_BITS: Final = 40
SEQ_MASK: Final = (1 << SEQ_BITS) - 1


def event_key(ordinal: int, seq: int) -> int:
    return (ordinal << SEQ_BITS) | seq


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    epoch: str
    seq: int
    id: str
    ts: str


@dataclass(frozen=True, slots=True)
class EpochInfo(EpochMark):
    """The sync port's :class:`~sync.store_port.EpochMark` plus the ledger's own columns."""

    ordinal: int
    created_at: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class LedgerStats:
    outbox_pending: int
    outbox_oldest_ts: str | None
    db_bytes: int
    wal_bytes: int
    last_seq: int
    applied_cseq: int
    epoch: str
