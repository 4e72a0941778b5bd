"""Bounded history: central prunes applied events older than a retention window once the
stock checkpoint holds them, in small batches on its own connection and thread.

The stock table is already the per-store checkpoint of every event through
``epochs.projected_seq`` (:mod:`central.runs`). A run of events may go when it was received
before the cutoff, lies wholly at or below ``projected_seq`` and below the epoch's first
unresolved quarantined event (operators still need that one's body). Deleting runs and
raising the epoch's ``compacted_seq`` (table ``epoch_compaction``) happen in one
transaction, a bounded batch of runs per transaction, with a pause between batches, so the
writer never waits longer than one small batch (SQLite's single write lock) and on
PostgreSQL not at all (other rows).

What still holds after pruning, and why:

- **dedup**: a resent seq at or below ``compacted_seq`` is below the applied watermark, so
  it is a duplicate by definition and is acknowledged as such; only its hash comparison
  (the conflict check) is no longer possible, so a *conflicting* resend that old is not
  detected. Above ``compacted_seq`` the comparison is unchanged. The core reads the kept
  events first and the floor second, so a batch pruned in between is still seen as pruned.
- **digest**: central's digest subtracts the events after the digest's ``through_seq``;
  they must still be there. A digest whose ``through_seq`` is below ``compacted_seq`` (older
  than the retention window) is set aside uncompared, never compared against missing data.
- **snapshot** reads the stock checkpoint plus the unprojected events, which are never
  pruned.
- the operators' ``events`` view shows only the retained window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from central.errors import StorageError
from central.history_schema import HistorySettings
from central.storage import Connection, Database
from sync.wire import format_ts

log = logging.getLogger("central.history")

@dataclass(slots=True)
class Pass:
    """What one compaction pass removed."""

    runs: int = 0
    events: int = 0
    batches: int = 0


def candidates(conn: Connection) -> list[tuple[str, str, int, int, int | None]]:
    """(store, epoch, compacted_seq, projected_seq, first unresolved quarantine seq)."""
    return [(str(s), str(e), int(c or 0), int(p), None if q is None else int(q))
            for s, e, c, p, q in conn.execute(
                "SELECT e.store, e.epoch, c.compacted_seq, e.projected_seq, "
                "(SELECT MIN(q.seq) FROM quarantine AS q WHERE q.store = e.store AND "
                "q.epoch = e.epoch AND q.resolved = 0) FROM epochs AS e "
                "LEFT JOIN epoch_compaction AS c ON c.store = e.store AND c.epoch = e.epoch "
                "WHERE e.projected_seq > COALESCE(c.compacted_seq, 0) "
                "ORDER BY e.store, e.epoch")]


def compact_batch(conn: Connection, cutoff: str, batch_runs: int,
                  epochs: list[tuple[str, str, int, int, int | None]]) -> tuple[int, int]:
    """One transaction: prune up to ``batch_runs`` eligible runs from the head of the given
    epochs (consumed from the list as they are finished). Returns (runs, events)."""
    runs = events = 0
    conn.begin_write()
    try:
        while epochs and runs < batch_runs:
            store, epoch, floor, projected, quarantine = epochs[0]
            limit = projected if quarantine is None else min(projected, quarantine - 1)
            want = batch_runs - runs
            rows = conn.execute(
                "SELECT first_seq, last_seq, received FROM event_runs WHERE store = ? AND "
                "epoch = ? AND first_seq > ? ORDER BY first_seq LIMIT ?",
                (store, epoch, floor, want))
            eligible = last_first = new_floor = 0
            for first, last, received in rows:
                if int(last) > limit or str(received) >= cutoff:
                    break
                eligible += 1
                last_first, new_floor = int(first), int(last)
                events += int(last) - int(first) + 1
            runs += eligible
            if eligible:
                conn.execute("DELETE FROM event_runs WHERE store = ? AND epoch = ? AND "
                             "first_seq > ? AND first_seq <= ?",
                             (store, epoch, floor, last_first))
                conn.execute(
                    "INSERT INTO epoch_compaction (store, epoch, compacted_seq, compacted_ts) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (store, epoch) DO UPDATE SET "
                    # never lowered, even by a slower pass of another worker's pruner
                    "compacted_seq = CASE WHEN excluded.compacted_seq > "
                    "epoch_compaction.compacted_seq THEN excluded.compacted_seq ELSE "
                    "epoch_compaction.compacted_seq END, compacted_ts = excluded.compacted_ts",
                    (store, epoch, new_floor, format_ts(datetime.now(UTC))))
                epochs[0] = (store, epoch, new_floor, projected, quarantine)
            if eligible < len(rows) or len(rows) < want:
                epochs.pop(0)  # an ineligible run, or no more: this epoch is done
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return runs, events


def compact(conn: Connection, cutoff: str, batch_runs: int = 200,
            pause: Callable[[], object] | None = None) -> Pass:
    """Prune every eligible run received before ``cutoff`` (an RFC 3339 UTC timestamp),
    ``batch_runs`` per transaction, calling ``pause`` between transactions."""
    out = Pass()
    epochs = candidates(conn)
    while epochs:
        runs, events = compact_batch(conn, cutoff, batch_runs, epochs)
        out.runs += runs
        out.events += events
        out.batches += 1
        if pause is not None and epochs:
            pause()
    return out


class Compactor:
    """The background pruner: a pass every ``interval_s`` on its own connection."""

    def __init__(self, db: Database, settings: HistorySettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.pruned_events = 0
        self.pruned_runs = 0
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central.history", daemon=True)

    @property
    def enabled(self) -> bool:
        return self.settings.retention_days > 0

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def cutoff(self) -> str:
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return format_ts(moment - timedelta(days=self.settings.retention_days))

    def run_pass(self) -> Pass:
        conn = self.db.connect()
        try:
            done = compact(conn, self.cutoff(), self.settings.batch_runs,
                           lambda: self._stop.wait(self.settings.pause_s))
        finally:
            conn.close()
        self.pruned_events += done.events
        self.pruned_runs += done.runs
        self.passes += 1
        if done.runs:
            log.info("history: pruned %d events (%d runs) in %d batches",
                     done.events, done.runs, done.batches)
        return done

    def _run(self) -> None:
        while not self._stop.wait(min(5.0, self.settings.interval_s)
                                  if self.passes == 0 else self.settings.interval_s):
            try:
                self.run_pass()
            except StorageError:
                log.exception("history compaction pass failed; retried at the next one")
