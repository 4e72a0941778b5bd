"""Visitor figures from the database: today's summary, per-period series, conversion.

Every function takes a plain ``sqlite3.Connection`` (the ledger's reader, or the CLI's own
read-only connection) and reads only pseudonymous tables. The store's time zone, footfall
period and opening hours are read from ``meta`` (the engine saves them at start), so the
CLI needs no configuration file.

Sales are counted from the retail ``sales`` table when it exists, else from ``sale``
events in the ledger (those are pruned after ``database.event_retention_days``).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from bisect import bisect_right
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.visitors.footfall import local_day_bounds
from edge_agent.visitors.store import META_PERIOD_S, META_TIMEZONE, iso


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone() is not None


def settings(conn: sqlite3.Connection) -> tuple[str, int]:
    """(time zone, footfall period in seconds) as saved by the engine."""
    return _meta(conn, META_TIMEZONE) or "UTC", int(_meta(conn, META_PERIOD_S) or 900)


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def sale_times(conn: sqlite3.Connection, start: float, end: float) -> list[str]:
    """Sorted RFC 3339 timestamps of the sales in [start, end)."""
    lo, hi = iso(start), iso(end)
    if _has_table(conn, "sales"):
        sql = "SELECT ts FROM sales WHERE ts >= ? AND ts < ?"
    else:
        sql = "SELECT ts FROM events WHERE type = 'sale' AND ts >= ? AND ts < ?"
    return sorted(str(row[0]) for row in conn.execute(sql, (lo, hi)))


def _entries_exits(conn: sqlite3.Connection, start: float, end: float) -> tuple[int, int]:
    row = conn.execute(
        "SELECT coalesce(sum(entries), 0), coalesce(sum(exits), 0) FROM footfall "
        "WHERE period_start >= ? AND period_start < ?", (int(start), int(end)),
    ).fetchone()
    return int(row[0]), int(row[1])


def conversion(conn: sqlite3.Connection, start: float, end: float) -> dict[str, Any]:
    """Sales per visit and per door entry between ``start`` and ``end`` (Unix seconds).

    Visits are counted by ``entered_at``; entries by footfall period start (the period
    that is still running is included, from its persisted counters).
    """
    visits = int(conn.execute(
        "SELECT count(*) FROM visits WHERE entered_at >= ? AND entered_at < ?", (start, end)
    ).fetchone()[0])
    entries, exits = _entries_exits(conn, start, end)
    sales = len(sale_times(conn, start, end))
    return {
        "from": iso(start), "to": iso(end), "visits": visits, "entries": entries,
        "exits": exits, "sales": sales, "sales_per_visit": ratio(sales, visits),
        "sales_per_entry": ratio(sales, entries),
    }


def periods(conn: sqlite3.Connection, start: float, end: float,
            period_s: int | None = None) -> list[dict[str, Any]]:
    """One row per footfall period in [start, end): entries, exits, visits, sales."""
    if period_s is None:
        period_s = settings(conn)[1]
    first = int(start // period_s) * period_s
    count = max(0, -(-(int(end) - first) // period_s))
    rows: list[dict[str, Any]] = [
        {"period_start": iso(first + i * period_s), "period_s": period_s, "entries": 0,
         "exits": 0, "visits": 0, "sales": 0}
        for i in range(count)
    ]
    if not rows:
        return rows
    for p_start, entries, exits in conn.execute(
        "SELECT period_start, sum(entries), sum(exits) FROM footfall "
        "WHERE period_start >= ? AND period_start < ? GROUP BY period_start",
        (first, int(end)),
    ):
        index = (int(p_start) - first) // period_s
        if 0 <= index < count:
            rows[index]["entries"] += int(entries)
            rows[index]["exits"] += int(exits)
    for (entered,) in conn.execute(
        "SELECT entered_at FROM visits WHERE entered_at >= ? AND entered_at < ?",
        (first, end),
    ):
        rows[int((float(entered) - first) // period_s)]["visits"] += 1
    bounds = [iso(first + i * period_s) for i in range(count + 1)]
    for ts in sale_times(conn, first, first + count * period_s):
        index = bisect_right(bounds, ts) - 1
        if 0 <= index < count:
            rows[index]["sales"] += 1
    for row in rows:
        row["sales_per_visit"] = ratio(row["sales"], row["visits"])
        row["sales_per_entry"] = ratio(row["sales"], row["entries"])
    return rows


def visitors_today(conn: sqlite3.Connection, *, now: float | None = None,
                   timezone: str | None = None) -> dict[str, Any]:
    """Today's figures in the store's time zone (``edge-agent visitors --today``).

    ``timezone`` defaults to the one the engine saved (UTC before it first ran). A database
    an older agent wrote (no visitors tables yet) gives zeros and says so.
    """
    if not _has_table(conn, "visits"):
        return {"visits": 0, "visitors": 0, "entries": 0, "exits": 0,
                "note": "no visitors data in this database (the agent has not run the "
                        "visitors migration yet)"}
    tz, _ = settings(conn)
    tz = timezone or tz
    now = time.time() if now is None else now
    start, end = local_day_bounds(now, tz)
    visit_rows = conn.execute(
        "SELECT visitor, dwell_s, customer FROM visits WHERE entered_at >= ? AND entered_at < ?",
        (start, end),
    ).fetchall()
    per_visitor: dict[str, int] = {}
    for row in visit_rows:
        per_visitor[str(row[0])] = per_visitor.get(str(row[0]), 0) + 1
    dwells = [int(row[1]) for row in visit_rows]
    open_now = int(conn.execute("SELECT count(*) FROM visit_open").fetchone()[0])
    figures = conversion(conn, start, end)
    return {
        "date": datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(tz)).date().isoformat(),
        "timezone": tz,
        "visits": len(visit_rows),
        "visitors": len(per_visitor),
        "returning_visitors": sum(1 for n in per_visitor.values() if n > 1),
        "customer_visits": sum(1 for row in visit_rows if row[2] is not None),
        "open_visits": open_now,
        "dwell_avg_s": round(statistics.fmean(dwells)) if dwells else None,
        "dwell_median_s": round(statistics.median(dwells)) if dwells else None,
        "entries": figures["entries"],
        "exits": figures["exits"],
        "sales": figures["sales"],
        "sales_per_visit": figures["sales_per_visit"],
        "sales_per_entry": figures["sales_per_entry"],
        "note": "returning visitors are counted within one pseudonym key period only",
    }

