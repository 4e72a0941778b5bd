"""The two transactions of the RFID engine: closing a count (the counting rule of
:mod:`edge_agent.rfid.tally` applied at the cut-off) and judging door sightings
(``unsold_tag_exit`` alerts). Each runs on the ledger's writer thread as one op."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

from edge_agent.ledger import AppendedEvent, Tx
from edge_agent.retail import ops
from edge_agent.rfid import store
from edge_agent.rfid.tally import CountSession, count_facts, tally
from sync.wire import canonical_json, format_ts

__all__ = ["DoorSighting", "close_op", "iso", "judge_op"]

DoorSighting: TypeAlias = tuple[str, str | None, str, str, float]
"""gtin, serial, door (device name), zone, seen (Unix seconds)."""


def iso(seconds: float) -> str:
    return format_ts(datetime.fromtimestamp(seconds, UTC))


def _event(appended: AppendedEvent) -> dict[str, Any]:
    return {"epoch": appended.epoch, "seq": appended.seq, "id": appended.id, "ts": appended.ts}


def close_op(tx: Tx, session: CountSession, now: float) -> dict[str, Any]:
    """Close ``session`` at ``now`` (the cut-off): the counting rule, the ``count`` facts,
    the floor locations of what was read, per-SKU accuracy and the count's row. One ledger
    transaction; returns the count's result."""
    counted_at = iso(now)
    epcs = session.epcs
    sold = store.sold_among(tx.query, epcs.keys())
    sku_of = store.skus_for_gtins(tx.query, {gtin for gtin, _ in epcs.values()})
    result = tally(epcs, sold, sku_of, store.located(tx.query), session.zones)
    expected = {sku: tx.on_hand(sku) for sku in result.counted}
    zones = sorted(session.zones) if session.zones is not None else None
    facts = count_facts(session.count_id, result, expected, counted_at=counted_at,
                        zones=zones, session=session)
    events = [_event(tx.append(f.type, f.data, stock=f.stock)) for f in facts]
    store.save_floor(tx, [(epc, gtin, sku_of.get(gtin), zone, now)
                          for epc, (gtin, zone) in epcs.items() if epc not in sold])
    lines = [{"sku": sku, "counted": qty, "expected": expected[sku],
              "variance": qty - expected[sku]} for sku, qty in result.counted.items()]
    tx.executemany(
        "INSERT INTO rfid_accuracy (sku, counted_ts, count_id, counted, expected, variance) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET "
        "counted_ts = excluded.counted_ts, count_id = excluded.count_id, "
        "counted = excluded.counted, expected = excluded.expected, "
        "variance = excluded.variance",
        [(x["sku"], counted_at, session.count_id, x["counted"], x["expected"],
          x["variance"]) for x in lines])
    body: dict[str, Any] = {
        "count_id": session.count_id, "status": "closed", "counted_at": counted_at,
        "zones": zones, "scope": "zones" if zones is not None else "store",
        "opened_at": iso(session.opened_at), "reads": session.reads,
        "tags": session.distinct, "non_sgtin_reads": session.non_sgtin_reads,
        "sold_excluded": result.sold_excluded,
        "unknown_gtins": [{"gtin": g, "tags": n}
                          for g, n in sorted(result.unknown_gtins.items())],
        "lines": lines, "events": events,
    }
    tx.execute("UPDATE rfid_counts SET status = 'closed', closed_at = ?, seq = ?, "
               "result = ? WHERE count_id = ?",
               (now, events[0]["seq"], canonical_json(body).decode(), session.count_id))
    return body


def judge_op(tx: Tx, due: Mapping[str, DoorSighting], now: float, grace_s: float, *,
             off_floor: bool = True) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Judge door sightings (epc -> gtin, serial, door, zone, seen): an ``unsold_tag_exit``
    alert fact for each tag of the catalog that is not sold, not returned within
    ``grace_s`` and not alerted within it (and, unless ``off_floor``, that the store saw
    on its floor); the others counted by reason."""
    alerts: list[dict[str, Any]] = []
    ignored: dict[str, int] = {}
    sku_of = store.skus_for_gtins(tx.query, {row[0] for row in due.values()})
    for epc, (gtin, serial, door, zone, seen) in due.items():
        sku = sku_of.get(gtin)
        if sku is None:  # not this chain's merchandise (a tag from another shop)
            ignored["foreign"] = ignored.get("foreign", 0) + 1
            continue
        floor = store.on_floor(tx, epc)
        verdict = "off_floor" if not (floor or off_floor) else \
            store.exit_verdict(tx, epc, now, grace_s)
        if verdict is not None:
            ignored[verdict] = ignored.get(verdict, 0) + 1
            continue
        data = {"kind": "unsold_tag_exit", "door": door, "zone": zone, "epc": epc,
                "gtin": gtin, "serial": serial, "sku": sku, "seen_at": iso(seen),
                "on_floor": floor}
        fact = ops.Fact("alert", data)
        alerts.append({**data, "event": _event(tx.append(fact.type, fact.data))})
    return alerts, ignored
