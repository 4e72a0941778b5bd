"""One history per customer across channels, and the omnichannel value index.

Store events that carry a ``customer`` (``sale``, ``return``, ``visit``; PROTOCOL §4.2)
are recorded by :func:`history_row` / :func:`record_history` inside the central's group
transaction; online orders come from the operator API (``POST /v1/customers/{ref}/
online-orders``), from order intake through :func:`record_online_order`, and, when the
central's order intake (``omni_orders``) is installed, from its orders' ``customer_ref``
at read time (:func:`intake_orders`). Rows are keyed
by (customer, kind, source id), so a replay or a resent order never counts twice.

The value index (:func:`value_index`, pure), over the last :data:`WINDOW_DAYS` days:

- ``channels``: how many of the two channels (``store``: purchases, returns, visits;
  ``online``: orders) the customer used;
- ``recency_days``: whole days since the latest activity in any channel;
- ``spend``: store purchases + online orders (not cancelled) - store refunds, in the
  customer's main currency (the one with the largest spend);
- ``index`` = round(40 * channels / 2 + 30 * 0.5^(recency_days / 30)
  + 30 * spend / (spend + 200)), an integer 0-100: both channels are worth 40 points,
  activity today 30 (halving every 30 days), and spend up to 30 (half of it at 200 units).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from central.storage import Connection
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now

WINDOW_DAYS: Final = 365
HISTORY_TYPES: Final = frozenset({"sale", "return", "visit"})
_KIND: Final = {"sale": ("purchase", "sale_id", "total"),
                "return": ("return", "return_id", "refund_total"),
                "visit": ("visit", "visit_id", None)}
OPEN_ORDER_STATES: Final = frozenset({"placed", "paid", "ready", "open"})
HistoryRow = tuple[str, str, str, str, str | None, str, str | None, str | None, str | None,
                   str | None]
_INSERT: Final = (
    "INSERT INTO customer_history (ref, kind, source_id, channel, store, ts, amount, currency,"
    " status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ref, kind, source_id)"
    " DO UPDATE SET status = excluded.status, amount = excluded.amount, "
    "detail = excluded.detail")


def _money(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(Decimal(value))
    except InvalidOperation:
        return None


def history_row(store: str, event: Mapping[str, Any]) -> HistoryRow | None:
    """The history row a store event implies, or None (no customer, not a history type)."""
    kind = event.get("type")
    data = event.get("data")
    if kind not in _KIND or not isinstance(data, Mapping):
        return None
    ref = data.get("customer")
    if not isinstance(ref, str) or not ref:
        return None
    name, id_field, amount_field = _KIND[str(kind)]
    source = data.get(id_field)
    source_id = source if isinstance(source, str) else str(event.get("id", ""))
    ts = data.get("entered_at") if kind == "visit" else event.get("ts")
    amount = _money(data.get(amount_field)) if amount_field else None
    currency = data.get("currency")
    return (ref, name, source_id, "store", store, str(ts if isinstance(ts, str) else
                                                      event.get("ts", "")),
            amount, currency if isinstance(currency, str) else None, None, None)


def record_history(conn: Connection, rows: Sequence[HistoryRow]) -> int:
    """Record rows of registered customers (others are skipped); returns how many."""
    known = {ref for ref in {r[0] for r in rows}
             if conn.execute("SELECT 1 FROM customers WHERE ref = ?", (ref,))}
    kept = [r for r in rows if r[0] in known]
    if kept:
        conn.executemany(_INSERT, kept)
    return len(kept)


def record_online_order(conn: Connection, ref: str, order: Mapping[str, Any]) -> None:
    """An online order of the customer (``order_ref``, ``total``, ``currency``,
    ``status``, ``placed_at``, ``lines``); recording the same order again updates it."""
    conn.execute(_INSERT, (
        ref, "order", str(order["order_ref"]), "online", None, str(order["placed_at"]),
        _money(order.get("total")), order.get("currency"), str(order.get("status", "placed")),
        orjson.dumps(order.get("lines") or []).decode()))


_FINAL_ORDER_STATES: Final = frozenset({"fulfilled", "cancelled", "rejected", "failed",
                                       "expired", "closed"})


def _has_table(conn: Connection, name: str) -> bool:
    if conn.dialect == "sqlite":
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                 "name = ?", (name,)))
    return bool(conn.execute("SELECT 1 FROM information_schema.tables WHERE "
                             "table_schema = current_schema() AND table_name = ?", (name,)))


def intake_orders(conn: Connection, ref: str) -> list[tuple[str, str, str]]:
    """(order id, state, created) of the orders central's order intake (``omni_orders``,
    when that module is installed) took with ``customer_ref`` = ``ref``. They carry no
    amount. Read at query time (a scan of the order bodies) until the intake records them
    here itself with :func:`record_online_order`."""
    if not _has_table(conn, "omni_orders"):
        return []
    needle = orjson.dumps({"customer_ref": ref}).decode()[1:-1]
    escaped = needle.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    rows = conn.execute("SELECT order_id, state, created, body FROM omni_orders WHERE body "
                        "LIKE ? ESCAPE '!'", (f"%{escaped}%",))
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows
            if orjson.loads(r[3]).get("customer_ref") == ref]


def _intake_open(state: str) -> str:
    return "cancelled" if state in {"cancelled", "rejected", "failed", "expired"} else \
        ("fulfilled" if state in _FINAL_ORDER_STATES else "open")


def value_index(events: Iterable[tuple[str, str, str, str | None, str | None, str | None]],
                now: datetime) -> dict[str, Any]:
    """The index over (kind, channel, ts, amount, currency, status) rows; see the module."""
    since = now - timedelta(days=WINDOW_DAYS)
    channels: set[str] = set()
    latest: datetime | None = None
    spend: dict[str, Decimal] = {}
    for kind, channel, ts, amount, currency, status in events:
        try:
            moment = parse_ts(ts)
        except WireFormatError:
            continue
        if moment < since:
            continue
        channels.add(channel)
        latest = moment if latest is None else max(latest, moment)
        if amount is None or currency is None or status == "cancelled":
            continue
        sign = -1 if kind == "return" else 1
        spend[currency] = spend.get(currency, Decimal(0)) + sign * Decimal(amount)
    main = max(spend, key=lambda c: spend[c]) if spend else None
    total = max(Decimal(0), spend[main]) if main else Decimal(0)
    recency = None if latest is None else max(0, (now - latest).days)
    score = 40 * len(channels) / 2
    if recency is not None:
        score += 30 * math.pow(0.5, recency / 30)
    score += 30 * float(total / (total + 200))
    return {"index": round(score), "channels": sorted(channels), "channel_count": len(channels),
            "recency_days": recency, "spend": str(total), "currency": main}


def customer_value(conn: Connection, ref: str, now: datetime | None = None) -> dict[str, Any]:
    rows = [tuple(r) for r in conn.execute(
        "SELECT kind, channel, ts, amount, currency, status FROM customer_history "
        "WHERE ref = ?", (ref,))]
    known = {str(r[0]) for r in conn.execute(
        "SELECT source_id FROM customer_history WHERE ref = ? AND kind = 'order'", (ref,))}
    rows += [("order", "online", created, None, None, _intake_open(state))
             for order_id, state, created in intake_orders(conn, ref) if order_id not in known]
    return value_index(rows, now or utc_now())


def history(conn: Connection, ref: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT kind, source_id, channel, store, ts, amount, currency, status FROM "
        "customer_history WHERE ref = ? ORDER BY ts DESC LIMIT ?", (ref, limit))
    out = [{"kind": r[0], "id": r[1], "channel": r[2], "store": r[3], "ts": r[4],
            "amount": r[5], "currency": r[6], "status": r[7]} for r in rows]
    known = {h["id"] for h in out if h["kind"] == "order"}
    out += [{"kind": "order", "id": order_id, "channel": "online", "store": None,
             "ts": created, "amount": None, "currency": None, "status": state}
            for order_id, state, created in intake_orders(conn, ref) if order_id not in known]
    out.sort(key=lambda h: str(h["ts"]), reverse=True)
    return out[:limit]


def open_orders(conn: Connection, ref: str, limit: int = 5) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT source_id, status, amount, currency, ts FROM customer_history WHERE ref = ? "
        "AND kind = 'order' ORDER BY ts DESC", (ref,))
    out = [{"order_ref": r[0], "status": r[1], "total": r[2], "currency": r[3],
            "placed_at": r[4]} for r in rows if r[1] in OPEN_ORDER_STATES]
    known = {o["order_ref"] for o in out}
    out += [{"order_ref": order_id, "status": state, "total": None, "currency": None,
             "placed_at": created} for order_id, state, created in intake_orders(conn, ref)
            if order_id not in known and _intake_open(state) == "open"]
    return out[:limit]
