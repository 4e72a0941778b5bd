"""Read-only answers from the database when the daemon is not running.

Every function opens its own read-only connection and reads inside one transaction, so
it is safe while a daemon writes (WAL) and never changes the file. The shapes mirror the
daemon's API answers so the commands print them the same way.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent import __version__
from edge_agent.cli._base import EXIT_DATABASE, CliError
from edge_agent.cli.client import PERMISSION_HINT
from edge_agent.config import Config
from edge_agent.errors import LedgerError
from edge_agent.ledger import read_epochs, read_stats
from edge_agent.ledger.schema import connect
from sync.errors import WireFormatError
from sync.wire import format_ts, parse_ts

T = TypeVar("T")


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.exists():
        raise CliError(f"daemon not running and no database at {path}",
                       hint="start the agent or run `edge-agent init`", code=EXIT_DATABASE)
    if not os.access(path, os.R_OK):
        raise CliError(f"no permission to read {path}", code=EXIT_DATABASE,
                       hint=PERMISSION_HINT)
    try:
        conn = connect(path, readonly=True)
    except LedgerError as exc:
        raise CliError(str(exc), code=EXIT_DATABASE) from exc
    try:
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise CliError(f"{path}: cannot read the database: {exc}", code=EXIT_DATABASE,
                       hint="`edge-agent db check`") from exc
    finally:
        conn.close()


def read(config: Config, fn: Callable[[sqlite3.Connection], T]) -> T:
    with open_readonly(config.database.path) as conn:
        return fn(conn)


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def age_s(ts: Any) -> int | None:
    """Seconds since the RFC 3339 timestamp ``ts`` (None when absent or unreadable)."""
    if not isinstance(ts, str):
        return None
    try:
        return max(0, int(time.time() - parse_ts(ts).timestamp()))
    except WireFormatError:
        return None


def status(config: Config) -> dict[str, Any]:
    path = config.database.path

    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        stats = read_stats(conn, path)
        directory = path.parent
        return {
            "state": "stopped",
            "version": __version__,
            "store": _meta(conn, "store_id") or config.store.id,
            "uptime_s": None,
            "boot_id": None,
            "epoch": stats.epoch,
            "last_seq": stats.last_seq,
            "applied_cseq": stats.applied_cseq,
            "resync_needed": _meta(conn, "resync_needed") == "1",
            "resync_reason": _meta(conn, "resync_reason"),
            "broker": {"connected": False, "last_ack_at": None, "reconnects": None},
            "outbox": {"pending": stats.outbox_pending, "oldest_ts": stats.outbox_oldest_ts,
                       "oldest_age_s": age_s(stats.outbox_oldest_ts)},
            "devices": {"connected": 0, "total": len(config.devices),
                        "items": [{"name": d.name, "kind": d.kind, "state": "stopped"}
                                  for d in config.devices]},
            "clock_offset_ms": None,
            "db": {"bytes": stats.db_bytes, "wal_bytes": stats.wal_bytes,
                   "disk_free_bytes": shutil.disk_usage(directory).free},
        }

    return read(config, fn)


def outbox(config: Config, limit: int) -> dict[str, Any]:
    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        epochs = read_epochs(conn)
        items: list[dict[str, Any]] = []
        pending = 0
        oldest: str | None = None
        for info in epochs:
            rows = conn.execute(
                "SELECT seq, event_id, type, ts, length(payload) FROM events "
                "WHERE epoch_ordinal = ? AND seq > ? ORDER BY id",
                (info.ordinal, info.acked_seq),
            ).fetchall()
            pending += len(rows)
            if rows and oldest is None:
                oldest = str(rows[0][3])
            for seq, event_id, kind, ts, size in rows:
                if len(items) < limit:
                    items.append({"epoch": info.epoch, "seq": int(seq), "id": event_id,
                                  "type": kind, "ts": ts, "bytes": int(size)})
        return {
            "pending": pending, "oldest_ts": oldest, "oldest_age_s": age_s(oldest),
            "epochs": [{"epoch": e.epoch, "last_seq": e.last_seq, "acked_seq": e.acked_seq,
                        "pending": max(0, e.last_seq - e.acked_seq)} for e in epochs],
            "items": items,
        }

    return read(config, fn)


def stock(config: Config, sku: str) -> dict[str, Any]:
    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        row = conn.execute("SELECT on_hand, reserved FROM stock WHERE sku = ?",
                           (sku,)).fetchone()
        cat = conn.execute("SELECT name, price, currency, active FROM catalog WHERE sku = ?",
                           (sku,)).fetchone()
        if row is None and cat is None:  # as the API's 404 sku_not_found
            raise CliError(f"no catalog item or stock for SKU {sku!r}",
                           hint="`edge-agent stock low --threshold 1000000` lists every SKU")
        on_hand = int(row[0]) if row else 0
        reserved = int(row[1]) if row else 0
        return {
            "sku": sku, "in_catalog": cat is not None, "name": cat["name"] if cat else None,
            "price": cat["price"] if cat else None, "currency": cat["currency"] if cat else None,
            "on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved,
        }

    return read(config, fn)


def stock_low(config: Config, threshold: int) -> dict[str, Any]:
    # the CLI's other commands need none of the retail package: load it here
    from edge_agent.retail.queries import read_low_stock  # noqa: PLC0415

    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        low = read_low_stock(conn, threshold)
        return {**low, "items": sorted(low["items"], key=lambda item: item["sku"])}

    return read(config, fn)


def day_bounds(day: date, tz_name: str) -> tuple[str, str]:
    """UTC timestamps (PROTOCOL §2 form) bounding the local ``day`` in ``tz_name``."""
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return format_ts(start), format_ts(start + timedelta(days=1))


def sales(config: Config, day: date) -> dict[str, Any]:
    lo, hi = day_bounds(day, config.store.timezone)

    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        count = 0
        total = Decimal(0)
        returns = 0
        refunds = Decimal(0)
        by_terminal: dict[str, dict[str, Any]] = {}
        units = 0
        for kind, payload in conn.execute(
            "SELECT type, payload FROM events WHERE type IN ('sale', 'return') "
            "AND ts >= ? AND ts < ? ORDER BY id", (lo, hi)
        ):
            data = json.loads(payload).get("data", {})
            if kind == "sale":
                count += 1
                amount = _money(data.get("total"))
                total += amount
                units += sum(int(line.get("qty", 0)) for line in data.get("lines", []))
                term = by_terminal.setdefault(str(data.get("terminal") or "?"),
                                              {"sales": 0, "total": Decimal(0)})
                term["sales"] += 1
                term["total"] += amount
            else:
                returns += 1
                refunds += _money(data.get("refund_total"))
        return {
            "date": day.isoformat(), "currency": config.store.currency, "sales": count,
            "total": str(total), "units": units, "returns": returns, "refunds": str(refunds),
            "net": str(total - refunds),
            "by_terminal": {k: {"sales": v["sales"], "total": str(v["total"])}
                            for k, v in sorted(by_terminal.items())},
        }

    return read(config, fn)


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def visitors_today(config: Config) -> dict[str, Any]:
    try:
        report = importlib.import_module("edge_agent.visitors.report")
    except ImportError as exc:
        raise CliError("the visitors report is not available in this build",
                       hint="upgrade edge-agent") from exc
    result: dict[str, Any] = read(config, report.visitors_today)
    return result
