"""Read queries on the ledger: epochs, outbox event ranges, digest figures, stats.

Plain functions of a connection, usable on the facade's reader threads and by the CLI
on a stopped store (no daemon needed).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.errors import LedgerError
from edge_agent.ledger.records import (
    SEQ_MASK,
    EpochInfo,
    LedgerStats,
    StoredEvent,
    event_key,
)
from sync.store_port import DigestFigures
from sync.wire import digest_lines


def read_epochs(conn: sqlite3.Connection) -> list[EpochInfo]:
    return [
        EpochInfo(
            epoch=str(r["epoch"]),
            ordinal=int(r["ordinal"]),
            last_seq=int(r["last_seq"]),
            acked_seq=int(r["acked_seq"]),
            created_at=str(r["created_at"]),
        )
        for r in conn.execute(
            "SELECT epoch, ordinal, last_seq, acked_seq, created_at FROM epochs ORDER BY ordinal"
        )
    ]


def _ordinal(conn: sqlite3.Connection, epoch: str) -> int:
    row = conn.execute("SELECT ordinal FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
    if row is None:
        raise LedgerError(f"unknown epoch {epoch!r}")
    return int(row[0])


def read_events_after(
    conn: sqlite3.Connection, epoch: str, after_seq: int, max_events: int, max_bytes: int
) -> list[StoredEvent]:
    ordinal = _ordinal(conn, epoch)
    out: list[StoredEvent] = []
    size = 0
    for seq, payload in conn.execute(
        "SELECT seq, payload FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (event_key(ordinal, after_seq), event_key(ordinal, SEQ_MASK), max_events),
    ):
        size += len(payload) + 1
        if out and size > max_bytes:
            break
        out.append(StoredEvent(int(seq), bytes(payload)))
    return out


def read_event_range(
    conn: sqlite3.Connection, epoch: str, after_seq: int, max_events: int, max_bytes: int
) -> tuple[int, int, bytes] | None:
    """(first seq, last seq, payloads joined with commas) of the events of ``epoch`` after
    ``after_seq``: at most ``max_events`` and, beyond the first, ``max_bytes`` with the commas.
    The outbox's read, one C-level join instead of an object per event; it stops before a
    gap in seq (there is none in a sound ledger, and central drops non-contiguous batches)."""
    ordinal = _ordinal(conn, epoch)
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (event_key(ordinal, after_seq), event_key(ordinal, SEQ_MASK), max_events),
    ).fetchall()
    if not rows:
        return None
    seqs, payloads = zip(*rows, strict=True)
    count = len(payloads)
    if sum(map(len, payloads)) + count - 1 > max_bytes:
        size, count = -1, 0
        for payload in payloads:
            size += len(payload) + 1
            if count and size > max_bytes:
                break
            count += 1
    first = int(seqs[0])
    if int(seqs[count - 1]) - first != count - 1:
        count = next(i for i in range(1, count) if seqs[i] != first + i)
    return first, first + count - 1, b",".join(payloads[:count])


def read_digest_state(conn: sqlite3.Connection) -> DigestFigures:
    epoch_row = conn.execute(
        "SELECT epoch, last_seq FROM epochs ORDER BY ordinal DESC LIMIT 1"
    ).fetchone()
    cseq = conn.execute("SELECT value FROM meta WHERE key = 'applied_cseq'").fetchone()
    skus, sha = digest_lines(
        (str(r[0]), int(r[1]), int(r[2]))
        for r in conn.execute("SELECT sku, on_hand, reserved FROM stock")
    )
    return DigestFigures(str(epoch_row[0]), int(epoch_row[1]), int(cseq[0]) if cseq else 0, skus,
                         sha)


def read_stats(conn: sqlite3.Connection, path: Path) -> LedgerStats:
    pending = 0
    oldest: str | None = None
    for info in read_epochs(conn):
        if info.last_seq > info.acked_seq:
            pending += info.last_seq - info.acked_seq
            if oldest is None:
                row = conn.execute(
                    "SELECT ts FROM events WHERE id > ? ORDER BY id LIMIT 1",
                    (event_key(info.ordinal, info.acked_seq),),
                ).fetchone()
                oldest = str(row[0]) if row else None
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
    wal = Path(f"{path}-wal")
    top = conn.execute(
        "SELECT epoch, last_seq FROM epochs ORDER BY ordinal DESC LIMIT 1"
    ).fetchone()
    cseq = conn.execute("SELECT value FROM meta WHERE key = 'applied_cseq'").fetchone()
    return LedgerStats(
        outbox_pending=pending,
        outbox_oldest_ts=oldest,
        db_bytes=page_size * page_count,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        last_seq=int(top[1]),
        applied_cseq=int(cseq[0]) if cseq else 0,
        epoch=str(top[0]),
    )
