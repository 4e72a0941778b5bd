"""Bounded history's table, settings and floor (see :mod:`central.history`), apart from the
pruner so that the storage, the configuration and the core can import them without a cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from central.storage import Connection

HISTORY_TABLES = (
    "CREATE TABLE IF NOT EXISTS epoch_compaction (store TEXT NOT NULL, epoch TEXT NOT NULL, "
    "compacted_seq BIGINT NOT NULL DEFAULT 0, compacted_ts TEXT NOT NULL, "
    "PRIMARY KEY (store, epoch))",
)


class HistorySettings(BaseModel):
    """``[history]``: how long applied events stay in full (0 days: forever), and how the
    pruner paces itself (runs per transaction, pause between transactions, pass interval)."""

    model_config = ConfigDict(extra="forbid")
    retention_days: float = Field(default=0, ge=0, le=3650)
    batch_runs: int = Field(default=200, ge=1, le=100_000)
    pause_s: float = Field(default=0.05, ge=0, le=60)
    interval_s: float = Field(default=600, gt=0, le=86_400)


def compacted_through(conn: Connection, store: str, epoch: str) -> int:
    """Every seq of (store, epoch) at or below this was applied and then pruned."""
    rows = conn.execute("SELECT compacted_seq FROM epoch_compaction WHERE store = ? AND "
                        "epoch = ?", (store, epoch))
    return int(rows[0][0]) if rows else 0
