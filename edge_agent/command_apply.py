"""Central's commands (PROTOCOL §5.1), each applied inside one ledger transaction.

``apply_command(tx, command)`` is the whole of it: it checks the command's ``stock`` and
``reserve`` lists (malformed → quarantined: the cseq is consumed, nothing changes, an
``alert`` event ``command_quarantined`` is recorded), applies the lists to the projection
whatever the type says (stock is computed from the lists alone), does the type's own
bookkeeping (catalog, reservations, count requests, resync), records the command in the
``commands`` table and sets ``applied_cseq`` — all in the same transaction.

Reservations have one writer per direction (§5.1): central creates them, only the store
takes them down, with a ``fulfilment`` or a ``reservation.released`` event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import pydantic

from drivers.carddata import is_card_data
from edge_agent.customers.commands import (
    COMMAND_TYPES as CUSTOMER_COMMANDS,
)
from edge_agent.customers.commands import (
    CustomerCommandInvalid,
    apply_customer_command,
)
from edge_agent.ledger import Tx
from edge_agent.orders import store as orders
from edge_agent.retail.recalls import apply_recall_command
from edge_agent.retail.reservations import cancel_reservation, qty_lines
from edge_agent.visitors.errors import LoyaltyCommandInvalid
from edge_agent.visitors.loyalty import apply_loyalty_command
from sync.errors import WireFormatError
from sync.messages import CatalogItem
from sync.recalls import RECALL_TYPES
from sync.wire import canonical_json, check_deltas, check_value, now_ts, parse_ts

Status = Literal["applied", "flagged", "quarantined", "ignored"]
LOYALTY_COMMANDS = frozenset({"loyalty.upsert", "loyalty.remove"})

KNOWN_TYPES = frozenset({
    "catalog.upsert", "catalog.remove", "stock.adjust", "reservation.create",
    "reservation.cancel", "count.request", "resync", "order.assign", "order.cancel",
})


def normalise_gtin(code: str) -> str | None:
    """A GTIN-8/12/13/14 as 14 digits (left zero-padded), or None if it is not one."""
    code = code.strip()
    if not code.isdigit() or not code.isascii() or len(code) not in (8, 12, 13, 14):
        return None
    return code.zfill(14)


def _record(tx: Tx, command: Mapping[str, Any], status: Status, reason: str | None) -> None:
    cseq = int(command["cseq"])
    try:
        payload = canonical_json(dict(command))
    except WireFormatError:
        payload = repr(dict(command)).encode()
    tx.execute(
        "INSERT OR REPLACE INTO commands "
        "(cseq, command_id, type, ts, status, reason, payload, applied_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cseq,
            str(command.get("id", "")),
            str(command.get("type", ""))[:64],
            str(command.get("ts", "")),
            status,
            reason,
            payload,
            now_ts(),
        ),
    )
    tx.set_applied_cseq(cseq)


def _check_lists(
    command: Mapping[str, Any],
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The command's stock and reserve lists; WireFormatError if malformed (quarantine)."""
    stock = check_deltas(command.get("stock", []), "stock")
    reserve = check_deltas(command.get("reserve", []), "reserve")
    if not isinstance(command.get("type"), str):
        raise WireFormatError("type: must be a string")
    if command.get("type") in ("reservation.cancel", "order.cancel") and (stock or reserve):
        raise WireFormatError(f"{command['type']} carries a non-empty stock/reserve list")
    return stock, reserve


CARD_DATA_REMOVED = "[card data removed]"
_DIGIT_RUN = re.compile(r"\d[\d \-]{11,40}\d")


def _spare_gtins(_gtin14: str) -> bool:
    return True  # a valid GTIN is a product code, never redacted


def _is_card_text(text: str) -> bool:
    if is_card_data(text, _spare_gtins):
        return True
    return any(is_card_data(m.group(), _spare_gtins) for m in _DIGIT_RUN.finditer(text))


def scrub_card_data(value: Any) -> tuple[Any, int]:
    """``value`` with every string that holds card data replaced, and how many were.

    Central must never send card numbers (PROTOCOL §9), but the store must not store one
    even if it does (PCI-DSS 3.3.1): the command is kept for audit without them.
    """
    if isinstance(value, str):
        return (CARD_DATA_REMOVED, 1) if _is_card_text(value) else (value, 0)
    if isinstance(value, dict):
        removed = 0
        out: dict[Any, Any] = {}
        for key, item in value.items():
            out[key], n = scrub_card_data(item)
            removed += n
        return out, removed
    if isinstance(value, list):
        items = [scrub_card_data(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def apply_command(tx: Tx, command: Mapping[str, Any]) -> tuple[Status, str | None]:
    """Apply one command whose cseq is ``tx.applied_cseq + 1`` (else it is ignored).

    Card data in the command is removed before anything of it is written."""
    scrubbed, removed = scrub_card_data(dict(command))
    status, reason = _apply_command(tx, scrubbed)
    if removed and status == "applied":
        status, reason = "flagged", f"card data removed from {removed} value(s)"
        tx.execute("UPDATE commands SET status = ?, reason = ? WHERE cseq = ?",
                   (status, reason, scrubbed["cseq"]))
    return status, reason


def _apply_command(tx: Tx, command: Mapping[str, Any]) -> tuple[Status, str | None]:
    cseq = command.get("cseq")
    if type(cseq) is not int or cseq != tx.applied_cseq + 1:
        return "ignored", "out of order"
    ctype = command.get("type")
    data = command.get("data", {})
    try:
        stock, reserve = _check_lists(command)
    except WireFormatError as exc:
        bad = str(exc)
        tx.append(
            "alert",
            {
                "kind": "command_quarantined",
                "cseq": cseq,
                "command_id": str(command.get("id", ""))[:128],
                "command_type": str(ctype)[:64],
                "reason": bad[:500],
            },
        )
        _record(tx, command, "quarantined", bad)
        return "quarantined", bad

    tx.apply_deltas(stock=stock, reserve=reserve)
    status: Status = "applied"
    reason: str | None = None
    if not isinstance(data, dict):
        status, reason = "flagged", "data is not an object"
        data = {}
    try:
        check_value(data)
    except WireFormatError as exc:
        status, reason = "flagged", str(exc)
        # An order must not be lost to a float in its address: it is kept, made wire-safe.
        data = orders.wire_safe(data) if ctype in orders.COMMANDS else {}

    problem: str | None
    if ctype == "catalog.upsert":
        problem = _catalog_upsert(tx, data, cseq)
    elif ctype == "catalog.remove":
        problem = _catalog_remove(tx, data)
    elif ctype == "stock.adjust":
        problem = None
    elif ctype == "reservation.create":
        problem = _reservation_create(tx, data, cseq)
    elif ctype == "reservation.cancel":
        rid = data.get("reservation_id")
        if not isinstance(rid, str):
            problem = "reservation.cancel without reservation_id"
        elif not cancel_reservation(tx, rid):
            _record(tx, command, "ignored", "reservation not open")
            return "ignored", "reservation not open"
        else:
            orders.follow_reservation(tx, rid)
            problem = None
    elif ctype == "count.request":
        problem = _count_request(tx, data, str(command.get("ts") or now_ts()))
    elif ctype == "resync":
        tx.set_meta("resync_needed", "1")
        tx.set_meta("resync_reason", "resync command")
        problem = None
    elif ctype in RECALL_TYPES:  # extension, docs/protocol.md "Recalls"
        problem = apply_recall_command(tx, command)
    elif ctype == "order.assign":  # extension, docs/protocol.md §12a
        problem = orders.assign(tx, data, cseq, reserve)
    elif ctype == "order.cancel":
        if not orders.cancel(tx, data):
            _record(tx, command, "ignored", "order not open at this store")
            return "ignored", "order not open at this store"
        problem = None
    elif ctype in LOYALTY_COMMANDS:  # extension, docs/protocol.md §5.1
        try:
            apply_loyalty_command(tx, ctype, data)
        except LoyaltyCommandInvalid as exc:
            problem = str(exc)
        else:
            problem = None
    elif ctype in CUSTOMER_COMMANDS:  # extension, docs/protocol.md §5.1
        try:  # only a summary is kept: never the pepper, a profile or a hash
            summary: dict[str, Any] = apply_customer_command(tx, ctype, data)
        except CustomerCommandInvalid as exc:
            problem, summary = str(exc), {"refused": True}
        else:
            problem = None
        command = {**command, "data": summary}
    else:
        problem = f"unknown command type {ctype!r} (stored; its lists were applied)"
    if problem is not None:
        status, reason = "flagged", problem
    _record(tx, command, status, reason)
    return status, reason


def _catalog_upsert(tx: Tx, data: Mapping[str, Any], cseq: int) -> str | None:
    items = data.get("items")
    if not isinstance(items, list):
        return "catalog.upsert without items[]"
    problems: list[str] = []
    for raw in items:
        try:
            item = CatalogItem.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems.append(f"item skipped: {exc.errors()[0].get('msg', 'invalid')}")
            continue
        extra = dict(item.model_extra or {})
        tx.execute(
            "INSERT INTO catalog (sku, name, price, currency, uom, active, extra, updated_cseq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET "
            "name = excluded.name, price = excluded.price, currency = excluded.currency, "
            "uom = excluded.uom, active = excluded.active, extra = excluded.extra, "
            "updated_cseq = excluded.updated_cseq",
            (item.sku, item.name, item.price, item.currency, item.uom, int(item.active),
             json.dumps(extra, sort_keys=True), cseq),
        )
        tx.execute("DELETE FROM catalog_gtins WHERE sku = ?", (item.sku,))
        for code in item.gtins:
            gtin = normalise_gtin(code) if isinstance(code, str) else None
            if gtin is None:
                problems.append(f"{item.sku}: GTIN {code!r} ignored")
                continue
            tx.execute(
                "INSERT OR REPLACE INTO catalog_gtins (gtin, sku) VALUES (?, ?)", (gtin, item.sku)
            )
    return "; ".join(problems)[:500] if problems else None


def _catalog_remove(tx: Tx, data: Mapping[str, Any]) -> str | None:
    skus = data.get("skus")
    if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
        return "catalog.remove without skus[]"
    for sku in skus:
        tx.execute("DELETE FROM catalog_gtins WHERE sku = ?", (sku,))
        tx.execute("DELETE FROM catalog_aliases WHERE sku = ?", (sku,))
        tx.execute("DELETE FROM catalog WHERE sku = ?", (sku,))
    return None


def _reservation_create(tx: Tx, data: Mapping[str, Any], cseq: int) -> str | None:
    rid, order_ref = data.get("reservation_id"), data.get("order_ref", "")
    lines = qty_lines(data.get("lines"))
    expires_at = data.get("expires_at")
    if not isinstance(rid, str) or not rid or lines is None:
        return "reservation.create without reservation_id or valid lines (lists applied)"
    if expires_at is not None:
        try:
            parse_ts(str(expires_at))
        except WireFormatError:
            expires_at = None
    if tx.query("SELECT 1 FROM reservations WHERE reservation_id = ?", (rid,)):
        return f"duplicate reservation {rid!r} (lists applied)"
    tx.execute(
        "INSERT INTO reservations (reservation_id, order_ref, lines, remaining, expires_at, "
        "status, cancel_requested, created_cseq) VALUES (?, ?, ?, ?, ?, 'open', 0, ?)",
        (rid, str(order_ref), json.dumps(lines), json.dumps(lines), expires_at, cseq),
    )
    return None


def _count_request(tx: Tx, data: Mapping[str, Any], ts: str) -> str | None:
    count_id, skus = data.get("count_id"), data.get("skus")
    if not isinstance(count_id, str) or not isinstance(skus, list):
        return "count.request without count_id or skus[]"
    tx.execute(
        "INSERT OR IGNORE INTO count_requests (count_id, skus, requested_at, status) "
        "VALUES (?, ?, ?, 'open')",
        (count_id, json.dumps([s for s in skus if isinstance(s, str)]), ts),
    )
    return None
