"""Events store → central (PROTOCOL §4) against a real broker and a real database (SQLite and
PostgreSQL): ordering, dedup by hash, conflicts, gaps, quarantine, drops, acks."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from central.storage import Database
from tests.central.conftest import Central, FakeStore, event, wait_until


def test_in_order_apply_and_ack(central: Central, make_store: Callable[[str], FakeStore]
                                ) -> None:
    store = make_store("S001")
    store.send([event(1, "A-1", 10, "receipt"), event(2, "A-1", -2), event(3, "B-2", -1)])
    store.wait_ack(3)
    store.send([event(4, "A-1", -3), event(5, "B-2", 4, "return")])
    ack = store.wait_ack(5)
    assert ack["v"] == 1
    assert ack["store"] == "S001"
    assert ack["ts"].endswith("Z")
    assert central.stock("S001") == {"A-1": (5, 0), "B-2": (3, 0)}
    # the ack never exceeds what a fresh connection can read as committed
    with Database(central.config.database_url).reading() as conn:
        rows = conn.execute("SELECT COUNT(*) FROM events WHERE store = 'S001'")
    assert rows[0][0] == 5


def test_duplicates_with_same_hash_are_ignored_and_acked(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    batch = [event(1, "A-1", -1), event(2, "A-1", -1), event(3, "A-1", -1)]
    store.send(batch)
    store.wait_ack(3)
    before = store.ack_count()
    store.send(batch[1:])  # duplicates only: still answered with an ack
    store.wait_ack(3, after=before)
    store.send([*batch, event(4, "A-1", -1)])  # overlap: only 4 is new
    store.wait_ack(4)
    assert central.stock("S001") == {"A-1": (-4, 0)}
    assert central.alerts("event_conflict") == []


def test_conflicting_hash_raises_alert_and_keeps_first(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(1, "A-1", -1), event(2, "A-1", -1)])
    store.wait_ack(2)
    before = store.ack_count()
    conflicting = event(2, "A-1", -50)  # same key, different content
    store.send([conflicting])
    store.wait_ack(2, after=before)
    before = store.ack_count()
    store.send([conflicting])  # resent: still refused, alerted only once
    store.wait_ack(2, after=before)
    assert central.stock("S001") == {"A-1": (-2, 0)}
    conflicts = wait_until(lambda: central.alerts("event_conflict"), what="conflict alert")
    assert len(conflicts) == 1
    assert conflicts[0]["detail"]["seq"] == 2
    assert conflicts[0]["severity"] == "critical"


def test_gap_applies_nothing_and_acks_the_watermark(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(1, "A-1", -1), event(2, "A-1", -1)])
    store.wait_ack(2)
    before = store.ack_count()
    store.send([event(5, "A-1", -100), event(6, "A-1", -100)])
    store.wait_ack(2, after=before)  # gap: answered at the watermark
    assert central.stock("S001") == {"A-1": (-2, 0)}
    store.send([event(3, "A-1", -1), event(4, "A-1", -1), event(5, "A-1", -1),
                event(6, "A-1", -1)])
    store.wait_ack(6)
    assert central.stock("S001") == {"A-1": (-6, 0)}


def test_first_batch_of_new_epoch_beyond_one_is_a_gap(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(3, "A-1", -1)])
    ack = store.wait_ack(0)
    assert ack["through_seq"] == 0
    assert central.stock("S001") == {}


def test_epochs_are_independent(central: Central, make_store: Callable[[str], FakeStore]
                                ) -> None:
    store = make_store("S001")
    old = store.epoch
    store.send([event(1, "A-1", -1), event(2, "A-1", -1)], epoch=old)
    store.wait_ack(2, epoch=old)
    store.epoch = "epoch-two"
    store.send([event(1, "A-1", 5)])
    store.wait_ack(1, epoch="epoch-two")
    assert central.stock("S001") == {"A-1": (3, 0)}
    status = central.get("/v1/stores/S001")
    assert {e["epoch"]: e["applied_seq"] for e in status["epochs"]} == {old: 2, "epoch-two": 1}


def test_lists_alone_drive_stock_whatever_the_type(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([
        event(1, "A-1", 7, "some.future.type", data={"odd": True}),
        {"seq": 2, "id": "x", "type": "visit", "ts": "2026-11-25T09:15:02.123Z",
         "data": {"visitor": "abcd"}},  # no lists at all: no change
        event(3, "A-1", -2, "sale", data="not-an-object", reserve=[{"sku": "A-1", "delta": 1}]),
    ])
    store.wait_ack(3)
    assert central.stock("S001") == {"A-1": (5, 1)}


def test_malformed_lists_are_quarantined(central: Central,
                                         make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    bad = event(2, "A-1", -1)
    bad["stock"] = [{"sku": "A-1", "delta": "3"}]
    store.send([event(1, "A-1", -1), bad, event(3, "A-1", -1),
                {**event(4), "reserve": None}])
    store.wait_ack(4)  # quarantined events consume their seq
    assert central.stock("S001") == {"A-1": (-2, 0)}
    alerts = wait_until(lambda: central.alerts("event_quarantined"), what="quarantine alert")
    assert sorted(a["detail"]["seq"] for a in alerts) == [2, 4]
    q = central.get("/v1/stores/S001/quarantine")["events"]
    assert [e["seq"] for e in q] == [2, 4]
    assert q[0]["event"] == bad  # kept verbatim
    central.post("/v1/stores/S001/quarantine/resolve", {"epoch": store.epoch, "seq": 2})
    q = central.get("/v1/stores/S001/quarantine")["events"]
    assert [e["resolved"] for e in q] == [True, False]


def test_drops_are_counted_never_acked(central: Central,
                                       make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    other = make_store("S002")
    t = store.topics
    store.publish(t.events, b"{not json")
    store.publish(t.events, orjson.dumps({"v": 2, "store": "S001", "epoch": "e",
                                          "events": [event(1)]}))
    store.publish(t.events, orjson.dumps({"v": 1, "store": "S002", "epoch": store.epoch,
                                          "events": [event(1)]}))
    store.publish(t.events, orjson.dumps({"v": 1, "store": "S001", "epoch": store.epoch,
                                          "events": [event(1), event(3)]}))
    store.publish(t.events, orjson.dumps({"v": 1, "store": "S001", "epoch": store.epoch,
                                          "events": []}))
    store.publish(t.events, orjson.dumps({"v": 1, "store": "S001", "epoch": store.epoch,
                                          "events": [event(1, data="x" * (1024 * 1024))]}))
    store.send([event(1, "A-1", -1)])
    store.wait_ack(1)
    central.sync()
    # the only ack is for the good batch; S002 got none for the batch sent on S001's topic
    assert [a["through_seq"] for a in store.acks if not a["_retained"]] == [1]
    assert other.acks == []
    drops = central.get("/v1/stores/S001")["drops"]
    assert drops == {"invalid JSON": 1, "unsupported v": 1, "store differs from topic": 1,
                     "malformed event batch": 2, "payload over 1 MiB": 1}
    counters = central.get("/v1/status")["counters"]
    assert counters["drops"] == 6
    assert (counters["inbox"], counters["inbox_bytes"]) == (0, 0)  # drained, all accounted


def test_same_range_dropped_three_times_alerts(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    bad = orjson.dumps({"v": 1, "store": "S001", "epoch": store.epoch,
                        "events": [event(1), {"seq": "two"}]})
    for _ in range(3):
        store.publish(store.topics.events, bad)
    store.send([event(1)])
    store.wait_ack(1)
    central.sync()
    alerts = central.alerts("repeated_drop")
    assert len(alerts) == 1
    assert alerts[0]["detail"]["times"] == 3


def test_many_stores_one_burst(central: Central, make_store: Callable[[str], FakeStore]
                               ) -> None:
    stores = [make_store(f"S{i:03d}") for i in range(1, 6)]
    for n in range(1, 41, 10):
        for s in stores:
            s.send([event(seq, "A-1", -1) for seq in range(n, n + 10)])
    for s in stores:
        s.wait_ack(40)
    for s in stores:
        assert central.stock(s.store) == {"A-1": (-40, 0)}


def test_wide_batch_touches_many_skus(central: Central,
                                      make_store: Callable[[str], FakeStore]) -> None:
    # more SKUs than the bulk (COPY) threshold of the PostgreSQL stock upsert
    store = make_store("S001")
    store.send([event(seq, f"SKU-{seq % 150:03d}", seq) for seq in range(1, 301)])
    store.wait_ack(300)
    store.send([event(seq, f"SKU-{seq % 150:03d}", -1) for seq in range(301, 451)])
    store.wait_ack(450)
    expected = {f"SKU-{k:03d}": (k + (k + 150) - 1 if k else 150 + 300 - 1, 0)
                for k in range(150)}
    assert central.stock("S001") == expected


def test_the_stock_checkpoint_catches_up_when_idle(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(seq, "A-1", -1) for seq in range(1, 6)])
    store.wait_ack(5)

    def checkpoint() -> list[tuple[object, ...]]:
        with Database(central.config.database_url).reading() as conn:
            return conn.execute(
                "SELECT s.on_hand, e.projected_seq FROM stock s JOIN epochs e "
                "ON e.store = s.store WHERE s.store = 'S001' AND s.sku = 'A-1'")

    assert wait_until(lambda: checkpoint() == [(-5, 5)], timeout=5, what="idle checkpoint")
