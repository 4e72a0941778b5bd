"""The store page's figures, read from the ledger: sales and units by hour against the same
weekday last week, footfall and conversion by hour, top SKUs, recent alerts.

Pure reads over a plain ``sqlite3.Connection`` (the ledger's reader); the times come in
as Unix seconds and the hour grid is built by :func:`hour_grid` from the store's zone.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from edge_agent.visitors import report
from edge_agent.visitors.store import iso


@dataclass(frozen=True, slots=True)
class HourGrid:
    """The hours of one local day: ``labels[i]`` is the local time of ``starts[i]``."""

    day: date
    starts: tuple[float, ...]
    end: float
    labels: tuple[str, ...]

    @property
    def start(self) -> float:
        return self.starts[0]


def hour_grid(day: date, timezone: str) -> HourGrid:
    """One slot per real hour of the local ``day`` (23 or 25 on a DST change)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), zone).timestamp()
    end = datetime.combine(day + timedelta(days=1), time(0), zone).timestamp()
    starts = tuple(float(t) for t in range(int(start), int(end), 3600))
    labels = tuple(datetime.fromtimestamp(t, zone).strftime("%H:%M") for t in starts)
    return HourGrid(day, starts, end, labels)


def _money(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def hourly_sales(conn: sqlite3.Connection, grid: HourGrid) -> list[dict[str, Any]]:
    """Sales (count), units and revenue per hour of ``grid``."""
    count = [0] * len(grid.starts)
    units = [0] * len(grid.starts)
    revenue = [Decimal(0)] * len(grid.starts)
    bounds = [iso(t) for t in grid.starts]
    for ts, total, lines in conn.execute(
            "SELECT ts, total, lines FROM sales WHERE ts >= ? AND ts < ?",
            (iso(grid.start), iso(grid.end))):
        index = bisect_right(bounds, str(ts)) - 1
        if index < 0:
            continue
        count[index] += 1
        revenue[index] += _money(total)
        units[index] += sum(int(line.get("qty", 0)) for line in orjson.loads(lines))
    return [{"hour": label, "sales": count[i], "units": units[i], "revenue": str(revenue[i])}
            for i, label in enumerate(grid.labels)]


def sales_by_hour(conn: sqlite3.Connection, day: date, timezone: str) -> dict[str, Any]:
    """Today's hourly sales beside the same weekday a week before, hour by hour."""
    grid = hour_grid(day, timezone)
    earlier = hour_grid(day - timedelta(days=7), timezone)
    today = hourly_sales(conn, grid)
    before = {row["hour"]: row for row in hourly_sales(conn, earlier)}
    empty = {"sales": 0, "units": 0, "revenue": "0"}
    hours = []
    for row in today:
        last = before.get(row["hour"], empty)
        hours.append({**row, "last_week_sales": last["sales"],
                      "last_week_units": last["units"], "last_week_revenue": last["revenue"]})
    totals = {key: sum(h[key] for h in hours)
              for key in ("sales", "units", "last_week_sales", "last_week_units")}
    totals["revenue"] = str(sum((_money(h["revenue"]) for h in hours), Decimal(0)))
    totals["last_week_revenue"] = str(sum((_money(h["last_week_revenue"]) for h in hours),
                                          Decimal(0)))
    return {"date": day.isoformat(), "compared_with": earlier.day.isoformat(),
            "timezone": timezone, "hours": hours, "totals": totals}


def footfall_by_hour(conn: sqlite3.Connection, day: date, timezone: str) -> dict[str, Any]:
    """Door entries, visits, sales and conversion (sales per visit) per local hour.

    The footfall periods lie on a UTC grid; in a zone whose midnight is not on the hour
    (UTC+5:30, +5:45) they are read at the half or quarter hour and summed per local hour."""
    grid = hour_grid(day, timezone)
    step = next(p for p in (3600, 1800, 900, 300, 60) if int(grid.start) % p == 0)
    keys = ("entries", "visits", "sales")
    sums = [dict.fromkeys(keys, 0) for _ in grid.starts]
    for row in report.periods(conn, grid.start, grid.end, step):
        started = datetime.fromisoformat(row["period_start"].replace("Z", "+00:00"))
        index = bisect_right(grid.starts, started.timestamp()) - 1
        if 0 <= index < len(sums):
            for key in keys:
                sums[index][key] += int(row[key])
    hours: list[dict[str, Any]] = [
        {"hour": label, **cell, "conversion": report.ratio(cell["sales"], cell["visits"])}
        for label, cell in zip(grid.labels, sums, strict=True)]
    visits = sum(cell["visits"] for cell in sums)
    sales = sum(cell["sales"] for cell in sums)
    return {"date": day.isoformat(), "hours": hours,
            "totals": {"entries": sum(cell["entries"] for cell in sums), "visits": visits,
                       "sales": sales, "conversion": report.ratio(sales, visits)}}


def top_skus(conn: sqlite3.Connection, start: float, end: float,
             limit: int = 5) -> list[dict[str, Any]]:
    """The SKUs sold most (by units) in [start, end), with their revenue and name."""
    units: dict[str, int] = {}
    revenue: dict[str, Decimal] = {}
    for (lines,) in conn.execute("SELECT lines FROM sales WHERE ts >= ? AND ts < ?",
                                 (iso(start), iso(end))):
        for line in orjson.loads(lines):
            sku = str(line.get("sku"))
            units[sku] = units.get(sku, 0) + int(line.get("qty", 0))
            revenue[sku] = revenue.get(sku, Decimal(0)) + _money(line.get("line_total", 0))
    best = sorted(units, key=lambda s: (-units[s], s))[:limit]
    names: dict[str, str] = {}
    if best:
        marks = ",".join("?" * len(best))
        names = {str(sku): str(name) for sku, name in conn.execute(
            f"SELECT sku, name FROM catalog WHERE sku IN ({marks})", best)}
    return [{"sku": sku, "name": names.get(sku), "units": units[sku],
             "revenue": str(revenue[sku])} for sku in best]


def recent_sales(conn: sqlite3.Connection, start: float, end: float,
                 limit: int = 10) -> list[dict[str, Any]]:
    """The newest sales in [start, end): id, time, terminal, total and units."""
    return [{"sale_id": sale_id, "ts": ts, "terminal": terminal, "total": total,
             "currency": currency,
             "units": sum(int(line.get("qty", 0)) for line in orjson.loads(lines))}
            for sale_id, ts, terminal, total, currency, lines in conn.execute(
                "SELECT sale_id, ts, terminal, total, currency, lines FROM sales "
                "WHERE ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?",
                (iso(start), iso(end), limit))]


def recent_alerts(conn: sqlite3.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``alert`` events still in the ledger (oversold, command quarantined,
    lost history, ...), newest first; each with its kind, time and details."""
    out = []
    for seq, ts, payload in conn.execute(
            "SELECT seq, ts, payload FROM events WHERE type = 'alert' ORDER BY id DESC LIMIT ?",
            (limit,)):
        data = orjson.loads(payload)
        body = data.get("data", data) if isinstance(data, dict) else {}
        out.append({"seq": int(seq), "ts": ts, "kind": body.get("kind", "alert"),
                    "detail": {k: v for k, v in body.items() if k != "kind"}})
    return out
