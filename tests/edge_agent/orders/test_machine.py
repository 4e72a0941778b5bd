"""The fulfilment queue's pure rules: allowed steps per state, picking arithmetic, facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import OperationError
from edge_agent.orders import machine
from edge_agent.orders.machine import Line, Order


def order(status: str = "incoming", fulfilment: str = "pickup",
          code_hash: str | None = None) -> Order:
    return Order.of(order_id="O1", reservation_id="ord-O1-1", fulfilment=fulfilment,
                    status=status, lines=[Line(1, "A", 2), Line(2, "B", 1), Line(3, "A", 1)],
                    pickup_code_hash=code_hash)


def code_of(call: object) -> str:
    with pytest.raises(OperationError) as info:
        call()  # type: ignore[operator]
    return info.value.code


def test_happy_path_pickup_facts() -> None:
    o, fact = machine.accept(order(), "ann")
    assert (o.status, fact.type, fact.data["by"]) == ("accepted", "order.accepted", "ann")
    assert not fact.stock
    assert not fact.reserve
    o, fact1 = machine.pick(o, "A", 2, gtin="05901234123457")
    assert o.status == "picking"
    assert fact1 is None
    o, fact2 = machine.pick(o, "B", 1)
    assert fact2 is None
    o, fact3 = machine.pick(o, "A", 1, gtin="05901234123457")
    assert o.status == "picked"
    assert fact3 is not None
    assert fact3.type == "order.picked"
    assert fact3.data["lines"] == [{"sku": "A", "qty": 3, "gtin": "05901234123457"},
                                   {"sku": "B", "qty": 1}]
    o, fact = machine.pack(o, 2)
    assert (o.status, fact.data["parcels"]) == ("packed", 2)
    o, fact = machine.ready(o)
    assert (o.status, fact.type) == ("ready", "order.ready")
    o, fact = machine.collect(o, None)
    assert o.status == "collected"
    assert fact.type == "fulfilment"
    assert fact.data["how"] == "collected"
    assert fact.data["order_ref"] == fact.data["order_id"] == "O1"
    assert set(fact.stock) == set(fact.reserve) == {("A", -3), ("B", -1)}


def test_refusals_have_stable_codes() -> None:
    accepted = machine.accept(order(), None)[0]
    assert code_of(lambda: machine.pick(order(), "A", 1)) == "order_wrong_state"
    assert code_of(lambda: machine.pick(accepted, "Z", 1)) == "pick_wrong_item"
    assert code_of(lambda: machine.pick(accepted, "B", 2)) == "pick_exceeds_order"
    assert code_of(lambda: machine.pick(accepted, "B", 0)) == "invalid_quantity"
    assert code_of(lambda: machine.accept(accepted, None)) == "order_wrong_state"
    assert code_of(lambda: machine.pack(accepted, None)) == "order_wrong_state"
    assert code_of(lambda: machine.ready(accepted)) == "order_wrong_state"
    assert code_of(lambda: machine.collect(accepted, None)) == "order_wrong_state"
    assert code_of(lambda: machine.ship(accepted, None)) == "fulfilment_mismatch"
    assert code_of(lambda: machine.reject(accepted, "bored", {})) == "invalid_reason"
    done = order("collected")
    assert code_of(lambda: machine.reject(done, "damaged", {})) == "order_closed"
    assert code_of(lambda: machine.accept(order("cancelled"), None)) == "order_closed"
    assert not machine.cancellable(done)
    assert machine.cancellable(order("ready"))


def test_serial_picked_twice_is_refused() -> None:
    o = machine.accept(order(), None)[0]
    o = machine.pick(o, "A", 1, serial="S1")[0]
    assert code_of(lambda: machine.pick(o, "A", 1, serial="S1")) == "pick_duplicate_serial"
    o = machine.pick(o, "A", 1, serial="S2")[0]
    assert [p.serial for p in o.picked] == ["S1", "S2"]


def test_reject_releases_what_remains() -> None:
    o, fact = machine.reject(order("picking"), "damaged", {"A": 3, "B": 0})
    assert o.status == "rejected"
    assert fact.data["lines"] == [{"sku": "A", "qty": 3}]
    assert fact.reserve == (("A", -3),)


def test_pickup_code() -> None:
    ready = order("ready", code_hash=machine.hash_pickup_code("4711"))
    assert code_of(lambda: machine.collect(ready, None)) == "pickup_code_required"
    assert code_of(lambda: machine.collect(ready, "4712")) == "pickup_code_wrong"
    assert machine.collect(ready, " 4711 ")[0].status == "collected"
    prefixed = order("ready", code_hash="sha256:" + machine.hash_pickup_code("9"))
    assert machine.collect(prefixed, "9")[0].status == "collected"


def test_ship_from_packed_with_tracking() -> None:
    o = order("packed", fulfilment="ship")
    assert code_of(lambda: machine.collect(o, None)) == "fulfilment_mismatch"
    o, fact = machine.ship(o, "TRK-1")
    assert (o.status, fact.data["how"], fact.data["tracking"]) == ("shipped", "shipped", "TRK-1")


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(1, 3)), max_size=12))
def test_picking_never_exceeds_the_order(scans: list[tuple[str, int]]) -> None:
    o = machine.accept(order(), None)[0]
    facts = 0
    codes: list[str] = []
    for sku, qty in scans:
        try:
            o, fact = machine.pick(o, sku, qty)
        except OperationError as exc:
            codes.append(exc.code)
            continue
        facts += fact is not None
        done = o.picked_by_sku()
        assert all(done[s] <= o.ordered[s] for s in done)
    assert set(codes) <= {"pick_wrong_item", "pick_exceeds_order", "order_wrong_state"}
    assert facts == (1 if o.status == "picked" else 0)
    assert (o.status == "picked") == o.fully_picked()
