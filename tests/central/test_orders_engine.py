"""The order engine on the core's writer path, no broker: a real database file, a
controlled wall clock. A failing order event is that message's poison only; rejections
and releases after a timeout; capacity; the feed's cursor; restart keeps the engine's
state."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.core import Core, Publish
from central.omni_config import OmniSettings
from central.omni_state import CursorExpired
from central.orders import OmniEngine
from central.storage import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ev(seq: int, kind: str, data: dict[str, Any], stock: list[Any] | None = None,
       reserve: list[Any] | None = None) -> dict[str, Any]:
    return {"seq": seq, "id": str(uuid.uuid4()), "type": kind, "ts": "2026-12-04T10:00:00.000Z",
            "data": data, "stock": stock or [], "reserve": reserve or []}


class Rig:
    def __init__(self, path: Path, settings: dict[str, Any] | None = None) -> None:
        self.db = Database(f"sqlite:///{path}")
        self.db.create_schema()
        self.clock = Clock()
        self.settings = OmniSettings.model_validate(settings or {
            "stores": {"S1": {"lat": 52.37, "lon": 4.90, "capacity_per_day": 1},
                       "S2": {"lat": 51.92, "lon": 4.48}}})
        self.engine = OmniEngine(self.settings, wall=self.clock)
        self.core = Core(self.db.connect(), watcher=self.engine)
        self.engine.attach(self.core.conn)
        self.seq: dict[str, int] = {}
        self.sent: list[Publish] = []

    def send(self, store: str, *events: dict[str, Any]) -> list[Publish]:
        body = {"v": 1, "store": store, "epoch": "e1", "events": list(events)}
        out = self.core.process([(f"retail/v1/stores/{store}/events", orjson.dumps(body),
                                  False)])
        self.sent += out
        return out

    def next(self, store: str) -> int:
        self.seq[store] = self.seq.get(store, 0) + 1
        return self.seq[store]

    def receive(self, store: str, sku: str, qty: int) -> None:
        self.send(store, ev(self.next(store), "receipt", {}, [{"sku": sku, "delta": qty}]))

    def order(self, order_id: str, qty: int = 1, **extra: Any) -> dict[str, Any]:
        request = {"order_id": order_id, "channel": "web", "fulfilment": "ship",
                   "lines": [{"line_no": 1, "sku": "A", "qty": qty}],
                   "ship_to": {"lat": 52.36, "lon": 4.89}, "may_split": False} | extra
        result, out = self.core.run_write(lambda tx: self.engine.submit(tx, request))
        self.sent += out
        order: dict[str, Any] = result[0]
        return order

    def detail(self, order_id: str) -> dict[str, Any]:
        from central.orders_db import order_detail  # noqa: PLC0415

        with self.db.reading() as conn:
            found = order_detail(conn, order_id)
        assert found is not None
        return found

    def tick(self) -> None:
        self.sent += self.engine.tick(self.core.run_write)

    def atp(self, sku: str = "A") -> dict[str, Any]:
        self.core.flush_projection()
        with self.db.reading() as conn:
            item: dict[str, Any] = self.engine.state.read_atp(conn, [sku], None, detail=True)[0]
        return item


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "c.db")


def test_a_failing_order_event_is_that_messages_poison(rig: Rig,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rig.receive("S1", "A", 5)
    original = rig.engine._on_store_event

    def boom(*args: Any, **kwargs: Any) -> None:
        if args[1] == "S1":
            raise RuntimeError("a bug in the order engine")
        original(*args, **kwargs)

    monkeypatch.setattr(rig.engine, "_on_store_event", boom)
    bad = {"v": 1, "store": "S1", "epoch": "e1", "events": [ev(
        2, "order.accepted", {"order_id": "X", "reservation_id": "ord-X-1"})]}
    good = {"v": 1, "store": "S2", "epoch": "e1", "events": [ev(
        1, "receipt", {}, [{"sku": "A", "delta": 3}])]}
    out = rig.core.process([("retail/v1/stores/S1/events", orjson.dumps(bad), False),
                            ("retail/v1/stores/S2/events", orjson.dumps(good), False)])
    acked = {orjson.loads(p.payload)["store"] for p in out if p.topic.endswith("/events/ack")}
    assert acked == {"S2"}  # the other store's batch is applied and acknowledged
    assert rig.atp()["atp"] == 8


def test_capacity_rejection_hold_and_release_after_timeout(rig: Rig) -> None:
    rig.receive("S1", "A", 5)
    rig.receive("S2", "A", 5)
    first = rig.order("O1")
    assert first["state"] == "brokered"
    part = rig.detail("O1")["assignments"][0]
    assert part["store"] == "S1"  # nearest
    # S1 has taken its one order of the day: the next goes to S2 although S1 is nearer
    rig.order("O2")
    assert rig.detail("O2")["assignments"][0]["store"] == "S2"
    cells = {c["store"]: c for c in rig.atp()["stores"]}
    assert cells["S1"]["excluded"] == "capacity"
    rid2 = rig.detail("O2")["assignments"][0]["reservation_id"]
    rig.send("S2", ev(rig.next("S2"), "order.accepted", {"order_id": "O2",
                                                          "reservation_id": rid2}))
    # O1 is never accepted: after accept_within it moves on, and S1's reservation stays
    rig.clock.now += rig.settings.accept_within + 1
    rig.tick()
    parts = {a["store"]: a["state"] for a in rig.detail("O1")["assignments"]}
    assert parts == {"S1": "timeout", "S2": "assigned"}
    with rig.db.reading() as conn:
        held = conn.execute("SELECT reserved FROM stock WHERE store = 'S1' AND sku = 'A'")
    assert held[0][0] == 1
    with rig.db.reading() as conn:
        body = conn.execute("SELECT body FROM commands WHERE store = 'S1' AND "
                            "type = 'order.cancel'")
    assert orjson.loads(body[0][0])["data"]["reason"] == "timeout"
    # the store releases it at last: the assignment is closed, nothing is re-brokered
    rid = part["reservation_id"]
    rig.send("S1", ev(rig.next("S1"), "reservation.released",
                      {"reservation_id": rid, "order_id": "O1", "reason": "cancelled"},
                      reserve=[{"sku": "A", "delta": -1}]))
    parts = {a["store"]: a["state"] for a in rig.detail("O1")["assignments"]}
    assert parts == {"S1": "released", "S2": "assigned"}
    # S2 rejects O2 it had accepted (damaged): S1 may take no more today, so it waits
    rig.send("S2", ev(rig.next("S2"), "order.rejected",
                      {"order_id": "O2", "reservation_id": rid2, "reason": "damaged",
                       "lines": [{"sku": "A", "qty": 1}]},
                      reserve=[{"sku": "A", "delta": -1}]))
    assert rig.detail("O2")["state"] == "queued"
    cells = {c["store"]: c for c in rig.atp()["stores"]}
    assert cells["S2"]["hold"] == 1
    # a new day: S1 has capacity again and the queued order goes there
    rig.clock.now += 86400
    rig.receive("S1", "B", 1)  # S1 is heard from today (a silent store promises nothing)
    rig.tick()
    assert [a["store"] for a in rig.detail("O2")["assignments"]] == ["S2", "S1"]
    assert rig.detail("O2")["state"] == "brokered"


def test_restart_keeps_orders_holds_queue_and_contacts(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "c.db")
    rig.receive("S2", "A", 2)
    assert rig.order("Q1", qty=5)["state"] == "queued"
    rig.order("O1")
    rid = rig.detail("O1")["assignments"][0]["reservation_id"]
    rig.send("S2", ev(rig.next("S2"), "order.rejected",
                      {"order_id": "O1", "reservation_id": rid, "reason": "not_found",
                       "lines": [{"sku": "A", "qty": 1}]}, reserve=[{"sku": "A", "delta": -1}]))
    cursor = rig.engine.state.token()
    rig.core.conn.close()
    again = Rig(tmp_path / "c.db", rig.settings.model_dump())
    again.clock.now = rig.clock.now
    item = again.atp()
    assert item["queued"] == 5 + 1  # Q1, and O1 waiting after its rejection
    assert {c["store"]: c["hold"] for c in item["stores"]} == {"S2": 1}
    assert again.engine.state.contact["S2"] == rig.clock.now
    with pytest.raises(CursorExpired):
        again.engine.state.changes(cursor, 10)


def test_changes_feed_pages_oldest_first(rig: Rig) -> None:
    start = rig.engine.state.token()
    rig.receive("S1", "Z", 1)  # a store heard from for the first time: all its SKUs
    rig.core.flush_projection()
    skus, stores, everything, start = rig.engine.state.changes(start, 10)
    assert (skus, stores, everything) == (["Z"], ["S1"], False)
    for index in range(5):
        rig.receive("S1", f"K{index}", 1)
        rig.core.flush_projection()
    skus, _, _, cursor = rig.engine.state.changes(start, 2)
    assert skus == ["K0", "K1"]
    skus, _, _, cursor = rig.engine.state.changes(cursor, 2)
    assert skus == ["K2", "K3"]
    skus, _, _, cursor = rig.engine.state.changes(cursor, 10)
    assert skus == ["K4"]
    assert rig.engine.state.changes(cursor, 10)[0] == []


def test_rfid_count_lowers_safety_stock_and_health_keeps_a_store_fresh(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "c.db", {"safety": {"default": 3, "rfid_factor": 0.5, "rfid_days": 7},
                                  "stale_after": 600, "silent_limit": 3600})
    rig.receive("S1", "A", 10)
    rig.send("S1", *[ev(rig.next("S1"), "sale", {}, [{"sku": "A", "delta": -1}])
                     for _ in range(6)])  # 6 sold in the last minute: 0.1 a second
    cell = rig.atp()["stores"][0]
    assert (cell["safety"], cell["atp"]) == (3, 1)
    counted = "2026-12-04T09:00:00+00:00"
    rig.send("S1", ev(rig.next("S1"), "count", {
        "count_id": "c1", "source": "rfid", "counted_at": counted,
        "lines": [{"sku": "A", "counted": 4, "expected": 4}]}))
    cell = rig.atp()["stores"][0]
    # the count's own time is older than rfid_days by this clock: no reduction
    assert cell["safety"] == 3
    rig.send("S1", ev(rig.next("S1"), "count", {
        "count_id": "c2", "source": "rfid",
        "lines": [{"sku": "A", "counted": 4, "expected": 4}]}))  # no counted_at: now
    cell = rig.atp()["stores"][0]
    assert (cell["safety"], cell["atp"]) == (2, 2)  # ceil(3 x 0.5)
    rig.send("S1", ev(rig.next("S1"), "count", {
        "count_id": "c3", "lines": [{"sku": "A", "counted": 4, "expected": 4}]}))
    assert rig.atp()["stores"][0]["safety"] == 3  # a manual count ends the reduction
    # silence: 700 s without a word costs ceil(0.1 x 700) = 70 > what is left
    rig.clock.now += 700
    cell = rig.atp()["stores"][0]
    assert cell["stale"] > 0
    assert cell["atp"] == 0
    # a live health message is contact: fresh again; a retained one is not
    health = orjson.dumps({
        "v": 1, "store": "S1", "ts": "2026-12-04T10:00:00.000Z", "agent": "edge-agent/test",
        "uptime_s": 1, "outbox_pending": 0, "outbox_oldest_age_s": 0, "last_ack_at": None,
        "applied_cseq": None, "db_bytes": 1, "wal_bytes": 0, "disk_free_bytes": 1,
        "clock_offset_ms": None, "devices": {"connected": 0, "total": 0}})
    rig.core.process([("retail/v1/stores/S1/health", health, True)])
    assert rig.atp()["stores"][0]["stale"] > 0
    rig.core.process([("retail/v1/stores/S1/health", b'{"v": 1}', False)])  # malformed
    assert rig.atp()["stores"][0]["stale"] > 0
    rig.core.process([("retail/v1/stores/S1/health", health, False)])
    assert rig.atp()["stores"][0]["stale"] == 0


def test_a_late_handover_is_recorded_not_lost(rig: Rig) -> None:
    rig.receive("S1", "A", 5)
    rig.receive("S2", "A", 5)
    rig.order("O1")
    rid = rig.detail("O1")["assignments"][0]["reservation_id"]
    rig.clock.now += rig.settings.accept_within + 1
    rig.receive("S2", "B", 1)  # S2 is heard from; S1 is not (offline)
    rig.tick()
    # S1 was offline: it shipped the order before it heard of the cancel
    rig.send("S1", ev(rig.next("S1"), "fulfilment", {
        "reservation_id": rid, "order_ref": "O1", "order_id": "O1", "how": "shipped",
        "lines": [{"sku": "A", "qty": 1}]}, [{"sku": "A", "delta": -1}],
        [{"sku": "A", "delta": -1}]))
    history = rig.detail("O1")["history"]
    assert [h["event"] for h in history] == ["received", "brokered", "timeout", "brokered",
                                             "shipped"]
    assert history[-1]["detail"]["after"] == "timeout"
    rig.core.flush_projection()
    with rig.db.reading() as conn:
        rows = conn.execute("SELECT on_hand, reserved FROM stock WHERE store = 'S1' "
                            "AND sku = 'A'")
    assert tuple(rows[0]) == (4, 0)  # nothing reserved twice at S1


json_any = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3), max_leaves=6)
order_kinds = st.sampled_from(["order.accepted", "order.rejected", "order.picked",
                               "order.packed", "order.ready", "fulfilment",
                               "reservation.released", "count"])
lines = st.one_of(json_any, st.lists(st.fixed_dictionaries(
    {"sku": st.sampled_from(["A", "B", "", "x y"]) | json_any,
     "qty": st.integers(-2, 3) | json_any}), max_size=3))
data = st.fixed_dictionaries({}, optional={
    "order_id": st.sampled_from(["O1", "O2"]) | json_any,
    "reservation_id": st.sampled_from(["ord-O1-1", "ord-O1-2", "nope"]) | json_any,
    "reason": st.sampled_from(["not_found", "damaged"]) | json_any,
    "lines": lines, "how": st.sampled_from(["collected", "shipped"]) | json_any,
    "by": json_any, "tracking": json_any, "source": st.just("rfid") | json_any,
    "counted_at": st.sampled_from(["2026-12-04T10:00:00Z", "yesterday", "0001-01-01",
                                   "9999-12-31T23:59:59-14:00"]) | json_any})


@settings(max_examples=150, deadline=None)
@given(script=st.lists(st.tuples(st.sampled_from(["S1", "S2"]), order_kinds,
                                 data | json_any), min_size=1, max_size=6))
def test_odd_order_events_are_never_poison(script: list[tuple[str, str, Any]]) -> None:
    """Whatever a store puts in an order event's data, the engine copes: the batch is
    applied and acknowledged, never skipped as poison."""
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp) / "c.db")
        rig.receive("S1", "A", 5)
        rig.receive("S2", "A", 5)
        rig.order("O1")
        for store, kind, body in script:
            drops = rig.core.counters().drops
            out = rig.send(store, ev(rig.next(store), kind, body))
            assert rig.core.counters().drops == drops
            assert any(p.topic.endswith(f"{store}/events/ack") for p in out)
        rig.clock.now += 86400
        rig.tick()
        rig.core.conn.close()
