"""The store's durable SQLite ledger (see :mod:`edge_agent.ledger.core`)."""

from edge_agent.ledger.core import (
    AppendedEvent,
    EpochInfo,
    Ledger,
    LedgerStats,
    StoredEvent,
    Tx,
    event_key,
    is_locked,
    read_digest_state,
    read_epochs,
    read_event_range,
    read_events_after,
    read_stats,
)

__all__ = [
    "AppendedEvent",
    "EpochInfo",
    "Ledger",
    "LedgerStats",
    "StoredEvent",
    "Tx",
    "event_key",
    "is_locked",
    "read_digest_state",
    "read_epochs",
    "read_event_range",
    "read_events_after",
    "read_stats",
]
