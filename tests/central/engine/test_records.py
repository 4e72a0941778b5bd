"""Central's record of issued commands (``central.engine.records``) through the real
engine on a SQLite file: each recording command type leaves its row, the others none."""

from __future__ import annotations

from central.core import Core
from central.engine.records import RECORDERS


def test_each_command_leaves_its_record(core: Core) -> None:
    item = {"sku": "A", "name": "Apple", "price": "1.00", "currency": "EUR"}
    core.issue("S001", [
        {"type": "catalog.upsert", "data": {"items": [item, {**item, "sku": "B"}]}},
        {"type": "catalog.remove", "data": {"skus": ["B"]}},
        {"type": "reservation.create", "data": {"reservation_id": "R1", "order_ref": "O1",
                                                "lines": [{"sku": "A", "qty": 2}]}},
        {"type": "reservation.cancel", "data": {"reservation_id": "R1"}},
        {"type": "count.request", "data": {"count_id": "C1", "skus": ["A"]}},
        {"type": "resync"},
    ])
    conn = core.conn
    assert [sku for (sku,) in conn.execute("SELECT sku FROM catalog WHERE store = 'S001'")
            ] == ["A"]
    assert conn.execute("SELECT reservation_id, order_ref, lines, cancel_requested, state "
                        "FROM reservations") == [
        ("R1", "O1", '[{"qty":2,"sku":"A"}]', 1, "open")]
    assert conn.execute("SELECT count_id, skus, state FROM count_requests") == [
        ("C1", '["A"]', "open")]
    assert core.exact_sku("A") == {"S001": (0, 2)}


def test_only_table_changing_types_are_recorded() -> None:
    assert set(RECORDERS) == {"catalog.upsert", "catalog.remove", "reservation.create",
                              "order.assign", "reservation.cancel", "count.request"}
