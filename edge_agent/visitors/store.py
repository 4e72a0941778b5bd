"""The visitors tables (migration m0003): functions of a ledger ``Tx`` or a read connection.

Nothing here ever receives a raw shopper id: visits arrive keyed by pseudonym.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from edge_agent.ledger import Tx
from edge_agent.visitors.footfall import OpeningHours, period_start
from edge_agent.visitors.sessions import ClosedVisit, OpenVisit
from sync.wire import format_ts

LOYALTY_VERSION_KEY: Final = "visitors.loyalty_version"
META_TIMEZONE: Final = "visitors.timezone"
META_PERIOD_S: Final = "visitors.footfall_period_s"
META_OPENING: Final = "visitors.opening_hours"


def iso(ts: float) -> str:
    return format_ts(datetime.fromtimestamp(ts, UTC))


# -- key ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    key: bytes
    created_at: float


def load_or_create_key(tx: Tx, new_key: bytes, now: float) -> KeyRow:
    """The current key; ``new_key`` becomes it when there is none."""
    rows = tx.query("SELECT id, key, created_at FROM visitor_keys ORDER BY id DESC LIMIT 1")
    if rows:
        row = rows[0]
        return KeyRow(int(row[0]), bytes(row[1]), float(row[2]))
    cursor = tx.execute(
        "INSERT INTO visitor_keys (key, created_at) VALUES (?, ?)", (new_key, now)
    )
    return KeyRow(int(cursor.lastrowid or 0), new_key, now)


def destroy_keys(tx: Tx) -> None:
    """Overwrite every stored key with zeros, then delete it, with ``secure_delete`` on so
    SQLite also zeroes the freed cell space (the old page image leaves the WAL at the next
    checkpoint)."""
    previous = int(tx.query("PRAGMA secure_delete")[0][0])
    tx.execute("PRAGMA secure_delete = ON")
    try:
        tx.execute("UPDATE visitor_keys SET key = zeroblob(length(key))")
        tx.execute("DELETE FROM visitor_keys")
    finally:
        tx.execute(f"PRAGMA secure_delete = {1 if previous else 0}")


def rotate_key(tx: Tx, new_key: bytes, now: float) -> KeyRow:
    """Destroy every stored key and store ``new_key``."""
    destroy_keys(tx)
    cursor = tx.execute(
        "INSERT INTO visitor_keys (key, created_at) VALUES (?, ?)", (new_key, now)
    )
    return KeyRow(int(cursor.lastrowid or 0), new_key, now)


# -- visits -------------------------------------------------------------------------------------
def visit_fact(visit: ClosedVisit) -> dict[str, Any]:
    data: dict[str, Any] = {
        "visit_id": visit.visit_id,
        "visitor": visit.visitor,
        "source": visit.source,
        "entered_at": iso(visit.entered_at),
        "left_at": iso(visit.left_at),
        "dwell_s": visit.dwell_s,
        "zone": visit.zone,
        "device": visit.device,
    }
    if visit.customer is not None:
        data["customer"] = visit.customer
    return data


def record_closed_visits(tx: Tx, visits: Iterable[ClosedVisit]) -> int:
    """One ``visit`` fact per visit, its report row, and its open state removed: atomically."""
    count = 0
    for visit in visits:
        if tx.query("SELECT 1 FROM visits WHERE visit_id = ?", (visit.visit_id,)):
            tx.execute("DELETE FROM visit_open WHERE visit_id = ?", (visit.visit_id,))
            continue  # already recorded (a retried write that had committed)
        appended = tx.append("visit", visit_fact(visit), ts=iso(visit.left_at))
        tx.execute(
            "INSERT INTO visits (visit_id, visitor, source, zone, device, entered_at, left_at, "
            "dwell_s, customer, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (visit.visit_id, visit.visitor, visit.source, visit.zone, visit.device,
             visit.entered_at, visit.left_at, visit.dwell_s, visit.customer, appended.seq),
        )
        tx.execute("DELETE FROM visit_open WHERE visit_id = ?", (visit.visit_id,))
        count += 1
    return count


OpenRow = tuple[str, str, str, str, str, float, float, str | None, int]


def open_row(visit: OpenVisit, key_id: int) -> OpenRow:
    return (visit.visitor, visit.visit_id, visit.source, visit.zone, visit.device,
            visit.entered_at, visit.last_seen, visit.customer, key_id)


def persist_open(tx: Tx, rows: Iterable[OpenRow]) -> None:
    tx.executemany(
        "INSERT INTO visit_open (visitor, visit_id, source, zone, device, entered_at, "
        "last_seen, customer, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (visitor) DO UPDATE SET visit_id = excluded.visit_id, "
        "source = excluded.source, zone = excluded.zone, device = excluded.device, "
        "entered_at = excluded.entered_at, last_seen = excluded.last_seen, "
        "customer = excluded.customer, key_id = excluded.key_id",
        list(rows),
    )


def load_open_visits(tx: Tx) -> list[OpenVisit]:
    return [
        OpenVisit(str(r[1]), str(r[0]), str(r[2]), str(r[3]), str(r[4]), float(r[5]),
                  float(r[6]), None if r[7] is None else str(r[7]), persisted_seen=float(r[6]))
        for r in tx.query(
            "SELECT visitor, visit_id, source, zone, device, entered_at, last_seen, customer "
            "FROM visit_open"
        )
    ]


# -- footfall -----------------------------------------------------------------------------------
def add_footfall(tx: Tx, deltas: Iterable[tuple[str, int, int, int]], period_s: int) -> None:
    tx.executemany(
        "INSERT INTO footfall (door, period_start, period_s, entries, exits) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (door, period_start) DO UPDATE SET "
        "entries = entries + excluded.entries, exits = exits + excluded.exits",
        [(door, start, period_s, entries, exits) for door, start, entries, exits in deltas],
    )


def emit_footfall(
    tx: Tx,
    doors: Mapping[str, str],
    now: float,
    *,
    period_s: int,
    hours: OpeningHours,
    fill_from: int,
) -> int:
    """Write one ``footfall`` fact per door and finished period, once.

    Counted periods are always written. Empty periods are written when they overlap
    opening hours and start at or after ``fill_from`` (the period the engine started in:
    periods while the agent was down are unknown, not zero, and are not invented).
    """
    last_done = period_start(now, period_s) - period_s
    state = {str(r[0]): int(r[1]) for r in tx.query(
        "SELECT door, emitted_through FROM footfall_doors")}
    names = set(doors) | {str(r[0]) for r in tx.query(
        "SELECT DISTINCT door FROM footfall WHERE emitted = 0")}
    written = 0
    for door in sorted(names):
        known = state.get(door)
        through = fill_from - period_s if known is None else known
        counted = {
            int(r[0]): (int(r[1]), int(r[2]), int(r[3]))
            for r in tx.query(
                "SELECT period_start, entries, exits, period_s FROM footfall "
                "WHERE door = ? AND emitted = 0 AND period_start <= ?",
                (door, last_done),
            )
        }
        starts = set(counted)
        if door in doors and last_done > through:
            first = max(through + period_s, fill_from)
            first = -(-first // period_s) * period_s
            starts.update(
                start for start in range(first, last_done + 1, period_s)
                if hours.overlaps(start, start + period_s)
            )
        for start in sorted(starts):
            entries, exits, length = counted.get(start, (0, 0, period_s))
            data: dict[str, Any] = {
                "door": door,
                "period_start": iso(start),
                "period_s": length,
                "entries": entries,
                "exits": exits,
            }
            zone = doors.get(door)
            if zone is not None:
                data["zone"] = zone
            tx.append("footfall", data, ts=iso(start + length))
            tx.execute(
                "INSERT INTO footfall (door, period_start, period_s, entries, exits, emitted) "
                "VALUES (?, ?, ?, 0, 0, 1) ON CONFLICT (door, period_start) DO UPDATE SET "
                "emitted = 1",
                (door, start, length),
            )
            written += 1
        if known is None or last_done > known:
            tx.execute(
                "INSERT INTO footfall_doors (door, emitted_through) VALUES (?, ?) "
                "ON CONFLICT (door) DO UPDATE SET emitted_through = excluded.emitted_through",
                (door, max(last_done, through)),
            )
    return written


# -- retention, loyalty, report settings ---------------------------------------------------------
def apply_retention(tx: Tx, before: float) -> int:
    """Delete report rows older than ``before``; the sent events are not touched."""
    visits = tx.execute("DELETE FROM visits WHERE left_at < ?", (before,)).rowcount
    tx.execute("DELETE FROM footfall WHERE emitted = 1 AND period_start < ?", (int(before),))
    return int(visits)


def loyalty_version(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LOYALTY_VERSION_KEY,)).fetchone()
    return "" if row is None else str(row[0])


def save_report_settings(tx: Tx, timezone: str, period_s: int, hours: tuple[str, str]) -> None:
    """So ``edge-agent visitors --today`` can read the database without the config file."""
    tx.set_meta(META_TIMEZONE, timezone)
    tx.set_meta(META_PERIOD_S, str(period_s))
    tx.set_meta(META_OPENING, f"{hours[0]}-{hours[1]}")
