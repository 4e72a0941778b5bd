"""Any interleaving of central's order commands and a clerk's steps, on a real ledger:
the store's reserved stock always equals what its open reservations still hold, an
order's reservation is released or handed over at most once, and every refusal is an
OperationError with a stable code (never a crash)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import OperationError
from edge_agent.ledger import Ledger, Tx
from edge_agent.orders import machine, store
from edge_agent.retail.catalog import CatalogView, scan_code
from edge_agent.retail.ops import Fact
from tests.edge_agent.orders.helpers import assign, cancel, stock_in
from tests.edge_agent.retail.seed import event_payloads, open_ledger, stock_table

CODES = ["5901234123457", "4006381333931", "CHOC"]  # A-100, B-200, C-300
ORDERS = ["W1", "W2", "W3"]

Op = tuple[str, str, int]
ops = st.lists(st.tuples(
    st.sampled_from(["assign", "cancel", "accept", "reject", "pick", "pack", "ready",
                     "collect"]),
    st.sampled_from(ORDERS), st.integers(0, 2)), max_size=25)


def run_step(ledger: Ledger, name: str, order_id: str, n: int) -> None:
    def op_for(order: machine.Order, sku: str) -> tuple[machine.Order, Fact | None]:
        if name == "accept":
            return machine.accept(order, None)
        if name == "pack":
            return machine.pack(order, None)
        if name == "ready":
            return machine.ready(order)
        if name == "pick":
            return machine.pick(order, sku, 1)
        return machine.collect(order, None)

    if name == "reject":
        ledger.write_blocking(lambda tx: store.reject_step("other")(tx, order_id))
        return

    def run(tx: Tx) -> None:
        sku = scan_code(CatalogView(tx.query), CODES[n], None).item.sku
        store.step(tx, order_id, lambda o: op_for(o, sku))
    ledger.write_blocking(run)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_reserved_always_matches_open_reservations(script: list[Op]) -> None:
    with tempfile.TemporaryDirectory(prefix="ea-prop-") as d:
        ledger = open_ledger(Path(d) / "l.db")
        try:
            stock_in(ledger, {"A-100": 50, "B-200": 50, "C-300": 50})
            attempts = dict.fromkeys(ORDERS, 0)
            for name, order_id, n in script:
                if name == "assign":
                    attempts[order_id] += 1
                    lines = {"A-100": 1 + n, "C-300": 1} if n else {"B-200": 2}
                    assign(ledger, order_id, lines, attempt=attempts[order_id])
                elif name == "cancel":
                    if attempts[order_id]:
                        cancel(ledger, order_id, attempt=attempts[order_id])
                else:
                    try:
                        run_step(ledger, name, order_id, n)
                    except OperationError as exc:
                        assert exc.code in {  # noqa: PT017 - many refusals in one run
                            "order_not_found", "order_wrong_state", "order_closed",
                            "pick_wrong_item", "pick_exceeds_order"}, exc.code
                check(ledger)
        finally:
            ledger.close()


def check(ledger: Ledger) -> None:
    held: dict[str, int] = {}
    for (remaining,) in ledger.read_blocking(lambda conn: conn.execute(
            "SELECT remaining FROM reservations WHERE status = 'open'").fetchall()):
        for line in json.loads(remaining):
            held[line["sku"]] = held.get(line["sku"], 0) + line["qty"]
    reserved = {sku: res for sku, (_, res) in stock_table(ledger).items() if res}
    assert reserved == {s: q for s, q in held.items() if q}
    closing = [e["data"]["reservation_id"] for e in event_payloads(ledger)
               if e["type"] in ("order.rejected", "reservation.released", "fulfilment")]
    assert len(closing) == len(set(closing))
    open_orders = ledger.read_blocking(lambda conn: conn.execute(
        "SELECT count(*) FROM orders o JOIN reservations r USING (reservation_id) "
        "WHERE o.status NOT IN ('collected', 'shipped', 'rejected', 'cancelled') "
        "AND r.status != 'open'").fetchone()[0])
    assert open_orders == 0
