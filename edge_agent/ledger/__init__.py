"""The store's durable SQLite ledger (the facade is :mod:`edge_agent.ledger.core`)."""

from edge_agent.ledger.core import Ledger
from edge_agent.ledger.lockfile import is_locked
from edge_agent.ledger.queries import (
    read_digest_state,
    read_epochs,
    read_event_range,
    read_events_after,
    read_stats,
)
from edge_agent.ledger.records import (
    AppendedEvent,
    EpochInfo,
    LedgerStats,
    StoredEvent,
    event_key,
)
from edge_agent.ledger.tx import Tx

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
