"""Apply a central snapshot (PROTOCOL §5.3) in ONE ledger transaction.

1. Replace the catalog (and its GTINs), the stock projection, the open reservations and
   the open count requests with the snapshot's (and the recalls, when it has them).
2. Re-apply, for each of the store's epochs, its own events with ``seq`` above that
   epoch's entry in ``snapshot.epochs`` (every event of an epoch not listed): their
   ``stock``/``reserve`` lists, and what they close (count requests, reservations).
3. Record those entries as acknowledged watermarks (``tx.set_acked``).
4. ``applied_cseq := through_cseq``; the resync need is cleared.
5. Act on open reservations with ``cancel_requested`` as if the cancel had just arrived;
   open online orders whose reservation central no longer holds are cancelled.
"""

from __future__ import annotations

import json
from typing import Any

from edge_agent.command_apply import normalise_gtin
from edge_agent.ledger import Tx, event_key
from edge_agent.orders import store as orders
from edge_agent.retail.recalls import replace_recalls
from edge_agent.retail.reservations import cancel_reservation, close_from_event
from sync.messages import Snapshot
from sync.wire import check_deltas, loads, now_ts


def apply_snapshot(tx: Tx, snapshot: Snapshot) -> dict[str, int]:
    """Returns counts of what was done (for logs)."""
    # 1. catalog
    tx.execute("DELETE FROM catalog_gtins")
    tx.execute("DELETE FROM catalog")
    for item in snapshot.catalog:
        extra = dict(item.model_extra or {})
        tx.execute(
            "INSERT INTO catalog (sku, name, price, currency, uom, active, extra, updated_cseq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item.sku, item.name, item.price, item.currency, item.uom, int(item.active),
             json.dumps(extra, sort_keys=True), snapshot.through_cseq),
        )
        for code in item.gtins:
            gtin = normalise_gtin(code)
            if gtin is not None:
                tx.execute(
                    "INSERT OR REPLACE INTO catalog_gtins (gtin, sku) VALUES (?, ?)",
                    (gtin, item.sku),
                )
    # stock
    tx.replace_stock((row.sku, row.on_hand, row.reserved) for row in snapshot.stock)
    # reservations: the snapshot's open ones replace ours (closed history is kept)
    tx.execute("DELETE FROM reservations WHERE status = 'open'")
    for res in snapshot.reservations:
        lines = json.dumps([{"sku": x.sku, "qty": x.qty} for x in res.lines])
        tx.execute(
            "INSERT OR REPLACE INTO reservations (reservation_id, order_ref, lines, remaining, "
            "expires_at, status, cancel_requested, created_cseq, closed_seq) "
            "VALUES (?, ?, ?, ?, ?, 'open', ?, NULL, NULL)",
            (res.reservation_id, res.order_ref, lines, lines, res.expires_at,
             int(res.cancel_requested)),
        )
    # count requests
    tx.execute("DELETE FROM count_requests WHERE status = 'open'")
    for req in snapshot.count_requests:
        tx.execute(
            "INSERT OR REPLACE INTO count_requests (count_id, skus, requested_at, status, "
            "closed_seq) VALUES (?, ?, ?, 'open', NULL)",
            (req.count_id, json.dumps(list(req.skus)), now_ts()),
        )

    # 2. + 3. re-apply our own events central has not applied yet
    reapplied = 0
    for epoch_row in tx.query("SELECT ordinal, epoch, last_seq FROM epochs ORDER BY ordinal"):
        epoch = str(epoch_row["epoch"])
        ordinal = int(epoch_row["ordinal"])
        entry = snapshot.epochs.get(epoch, 0)
        for row in tx.query(
            "SELECT seq, type, payload FROM events WHERE id > ? AND id <= ? ORDER BY id",
            (event_key(ordinal, entry), event_key(ordinal, (1 << 40) - 1)),
        ):
            event: dict[str, Any] = loads(bytes(row["payload"]))
            try:
                stock = check_deltas(event.get("stock", []), "stock")
                reserve = check_deltas(event.get("reserve", []), "reserve")
            except ValueError:
                continue  # the store never records such an event; be safe anyway
            tx.apply_deltas(stock=stock, reserve=reserve)
            data = event.get("data")
            if isinstance(data, dict):
                close_from_event(tx, str(row["type"]), data, int(row["seq"]))
            reapplied += 1
        if epoch in snapshot.epochs:
            tx.set_acked(epoch, min(entry, int(epoch_row["last_seq"])))

    if snapshot.recalls is not None:  # extension: docs/protocol.md "Recalls"
        replace_recalls(tx, snapshot.recalls)

    # 4.
    tx.set_applied_cseq(snapshot.through_cseq)
    tx.set_meta("resync_needed", "0")
    tx.set_meta("resync_reason", "")
    tx.set_meta("resynced_at", now_ts())

    # 5. pending cancels, as if the command had just arrived
    cancelled = 0
    for row in tx.query(
        "SELECT reservation_id FROM reservations WHERE status = 'open' AND cancel_requested = 1"
    ):
        if cancel_reservation(tx, str(row["reservation_id"])):
            cancelled += 1
    orders_cancelled = orders.reconcile(tx)  # the queue follows central's reservations
    return {
        "orders_cancelled": orders_cancelled,
        "catalog": len(snapshot.catalog),
        "stock": len(snapshot.stock),
        "reapplied_events": reapplied,
        "cancelled": cancelled,
    }
