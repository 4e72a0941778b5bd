"""Applying a §5.3 snapshot: one transaction, own events above central's entry re-applied."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import command_apply as cmds
from edge_agent.ledger import Ledger, Tx
from edge_agent.resync import apply_snapshot
from sync.messages import Snapshot
from sync.wire import loads

STORE = "S001"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "store.db", STORE) as opened:
        yield opened


def rows(ledger: Ledger, sql: str) -> list[tuple[Any, ...]]:
    return ledger.read_blocking(lambda conn: [tuple(r) for r in conn.execute(sql)])


def stock(ledger: Ledger) -> dict[str, tuple[int, int]]:
    return {r[0]: (r[1], r[2]) for r in rows(ledger, "SELECT sku, on_hand, reserved FROM stock")
            if r[1] or r[2]}


def snapshot(**kw: Any) -> Snapshot:
    base: dict[str, Any] = {"store": STORE, "through_cseq": 0, "epochs": {}, "catalog": [],
                            "stock": [], "reservations": [], "count_requests": []}
    base.update(kw)
    return Snapshot.model_validate(base)


def record_random(ledger: Ledger, rng: random.Random, n: int) -> None:
    def op(tx: Tx) -> None:
        for _ in range(n):
            sku = rng.choice("ABCDE")
            tx.append("sale", {"sale_id": str(rng.random())}, stock=[(sku, -rng.randint(1, 3))],
                      reserve=[(sku, rng.randint(-1, 1))] if rng.random() < 0.3 else ())

    ledger.write_blocking(op)


def central_view(ledger: Ledger, entries: dict[str, int], base: dict[str, list[int]]) \
        -> list[dict[str, Any]]:
    """What central holds: its base (commands) plus our events up to each entry."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sku, (on, res) in base.items():
        totals[sku][0] += on
        totals[sku][1] += res
    for epoch, ordinal in rows(ledger, "SELECT epoch, ordinal FROM epochs"):
        for seq, payload in rows(ledger, f"SELECT seq, payload FROM events "
                                         f"WHERE epoch_ordinal = {ordinal} ORDER BY seq"):
            if seq > entries.get(epoch, 0):
                continue
            event = loads(payload)
            for d in event.get("stock", []):
                totals[d["sku"]][0] += d["delta"]
            for d in event.get("reserve", []):
                totals[d["sku"]][1] += d["delta"]
    return [{"sku": s, "on_hand": v[0], "reserved": v[1]} for s, v in totals.items()]


def test_resync_rebuilds_the_state_of_a_store_that_never_lost_anything(ledger: Ledger) -> None:
    rng = random.Random(7)
    ledger.write_blocking(lambda tx: tx.apply_deltas(stock=[("A", 50), ("B", 40)]))  # commands
    record_random(ledger, rng, 40)
    first = ledger.current_epoch
    ledger.write_blocking(lambda tx: tx.new_epoch("restore"))
    record_random(ledger, rng, 30)
    second = ledger.current_epoch
    truth = stock(ledger)

    # the local projection drifts (e.g. a restored file), then central's snapshot arrives:
    # it has applied 25 events of the first epoch and 10 of the second
    ledger.write_blocking(lambda tx: tx.apply_deltas(stock=[("A", 999), ("Z", 5)]))
    entries = {first: 25, second: 10}
    snap = snapshot(through_cseq=9, epochs=entries,
                    stock=central_view(ledger, entries, {"A": [50, 0], "B": [40, 0]}))
    result = ledger.write_blocking(lambda tx: apply_snapshot(tx, snap))

    assert result["reapplied_events"] == 15 + 20
    assert stock(ledger) == truth
    assert rows(ledger, "SELECT epoch, acked_seq FROM epochs ORDER BY ordinal") == [
        (first, 25), (second, 10)]
    meta = dict(rows(ledger, "SELECT key, value FROM meta"))
    assert (meta["applied_cseq"], meta["resync_needed"]) == ("9", "0")
    assert "resynced_at" in meta


def test_unlisted_epoch_is_reapplied_whole_and_watermarks_never_drop(ledger: Ledger) -> None:
    rng = random.Random(3)
    record_random(ledger, rng, 12)
    truth = stock(ledger)
    ledger.write_blocking(lambda tx: tx.set_acked(tx.epoch, 5))
    apply = ledger.write_blocking
    apply(lambda tx: apply_snapshot(tx, snapshot(through_cseq=2)))
    assert stock(ledger) == truth
    assert rows(ledger, "SELECT acked_seq FROM epochs") == [(5,)]


def test_catalog_reservations_and_count_requests_are_replaced(ledger: Ledger) -> None:
    # local state central does not know any more
    ledger.write_blocking(lambda tx: cmds.apply_command(tx, {
        "cseq": 1, "id": "x", "type": "catalog.upsert", "ts": "t",
        "data": {"items": [{"sku": "OLD", "name": "Old", "gtins": ["12345670"],
                            "price": "1", "currency": "EUR"}]}}))

    # our own events central has not applied: a fulfilment of R1 and a count closing K1
    def own(tx: Tx) -> None:
        data = {"reservation_id": "R1", "order_ref": "O1", "lines": [{"sku": "A", "qty": 2}]}
        tx.append("fulfilment", data, stock=[("A", -2)], reserve=[("A", -2)])
        tx.append("count", {"count_id": "K1", "lines": []})

    ledger.write_blocking(own)
    snap = snapshot(
        through_cseq=12,
        epochs={ledger.current_epoch: 0},
        catalog=[{"sku": "A", "name": "Mug", "gtins": ["4006381333931"], "price": "12.90",
                  "currency": "EUR", "uom": "unit", "active": True}],
        stock=[{"sku": "A", "on_hand": 10, "reserved": 5}],
        reservations=[
            {"reservation_id": "R1", "order_ref": "O1", "lines": [{"sku": "A", "qty": 2}]},
            {"reservation_id": "R2", "order_ref": "O2", "lines": [{"sku": "A", "qty": 3}],
             "cancel_requested": True},
        ],
        count_requests=[{"count_id": "K1", "skus": ["A"]}, {"count_id": "K2", "skus": ["A"]}],
    )
    result = ledger.write_blocking(lambda tx: apply_snapshot(tx, snap))
    assert result["cancelled"] == 1
    assert rows(ledger, "SELECT sku FROM catalog") == [("A",)]
    assert rows(ledger, "SELECT gtin, sku FROM catalog_gtins") == [("04006381333931", "A")]
    # R1 fulfilled by our re-applied event, R2 released as if the cancel had arrived
    assert dict(rows(ledger, "SELECT reservation_id, status FROM reservations")) == {
        "R1": "fulfilled", "R2": "released"}
    assert dict(rows(ledger, "SELECT count_id, status FROM count_requests")) == {
        "K1": "closed", "K2": "open"}
    # 10 - 2 on hand; 5 - 2 (fulfilment) - 3 (R2 released) reserved
    assert stock(ledger) == {"A": (8, 0)}
    last = loads(rows(ledger, "SELECT payload FROM events ORDER BY id DESC LIMIT 1")[0][0])
    assert last["type"] == "reservation.released"
    assert last["data"]["reason"] == "cancelled"


def test_a_failing_snapshot_changes_nothing(ledger: Ledger) -> None:
    ledger.write_blocking(lambda tx: tx.apply_deltas(stock=[("A", 3)]))
    bad = snapshot(stock=[{"sku": "A", "on_hand": 1, "reserved": 0}],
                   count_requests=[{"count_id": "K", "skus": []}])
    # break it after validation, so the failure happens late in the transaction
    object.__setattr__(bad.count_requests[0], "skus", None)

    with pytest.raises(TypeError):
        ledger.write_blocking(lambda tx: apply_snapshot(tx, bad))
    assert stock(ledger) == {"A": (3, 0)}
    assert dict(rows(ledger, "SELECT key, value FROM meta"))["resync_needed"] == "1"
