"""A resync (central's snapshot) and the queue: an order central released while the store
missed the cancel is cancelled; a rejection central has not yet applied still releases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.ledger import Ledger
from edge_agent.orders import machine, store
from edge_agent.resync import apply_snapshot
from edge_agent.retail.catalog import conn_query
from sync.messages import Snapshot
from tests.edge_agent.orders.helpers import assign
from tests.edge_agent.retail.seed import stock_table

STORE = "S001"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "store.db", STORE) as opened:
        yield opened


def reservation(rid: str, order_id: str, sku: str, qty: int) -> dict[str, Any]:
    return {"reservation_id": rid, "order_ref": order_id, "lines": [{"sku": sku, "qty": qty}],
            "expires_at": None, "cancel_requested": False}


def status(ledger: Ledger, order_id: str) -> str:
    return str(ledger.read_blocking(
        lambda conn: store.read_order(conn_query(conn), order_id))["status"])


def test_resync_cancels_orders_central_released_and_keeps_local_rejections(
        ledger: Ledger) -> None:
    assign(ledger, "W1", {"A": 2})  # cseq 1
    assign(ledger, "W2", {"A": 1})  # cseq 2
    ledger.write_blocking(lambda tx: store.step(
        tx, "W2", lambda o: machine.reject(o, "damaged", {"A": 1}), reason="damaged"))
    assert stock_table(ledger)["A"] == (0, 2)
    # Central cancelled W1 (cseq 3, never applied here) and has not seen W2's rejection.
    snap = Snapshot.model_validate({
        "store": STORE, "through_cseq": 3, "epochs": {}, "catalog": [],
        "stock": [{"sku": "A", "on_hand": 0, "reserved": 1}],
        "reservations": [reservation("ord-W2-1", "W2", "A", 1)], "count_requests": []})
    result = ledger.write_blocking(lambda tx: apply_snapshot(tx, snap))
    assert result["orders_cancelled"] == 1
    assert status(ledger, "W1") == "cancelled"
    assert status(ledger, "W2") == "rejected"
    assert stock_table(ledger)["A"] == (0, 0)  # the rejection was re-applied
    reservations = ledger.read_blocking(lambda conn: dict(conn.execute(
        "SELECT reservation_id, status FROM reservations").fetchall()))
    assert reservations == {"ord-W2-1": "released"}
