"""The omnichannel loop at central, against a real broker and database (SQLite and
PostgreSQL): ATP over HTTP, order intake, brokering by proximity, rejection and
re-brokering with a hold, timeouts, the unfillable queue, cancellation, the changes feed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.central.conftest import Central, FakeStore, event, wait_until

OMNI = {
    "stores": {"S001": {"lat": 52.37, "lon": 4.90}, "S002": {"lat": 51.92, "lon": 4.48}},
    "postcodes": {"3011": [51.92, 4.48]},
    "rebroker_every": 0.5,
}


def receipt(seq: int, sku: str, qty: int) -> dict[str, Any]:
    return {"seq": seq, "id": str(uuid.uuid4()), "type": "receipt",
            "ts": "2026-11-25T09:15:02.123Z", "data": {}, "stock": [{"sku": sku, "delta": qty}],
            "reserve": []}


def store_event(seq: int, kind: str, data: dict[str, Any], *, reserve: list[Any] | None = None,
                stock: list[Any] | None = None) -> dict[str, Any]:
    return {"seq": seq, "id": str(uuid.uuid4()), "type": kind, "ts": "2026-11-25T09:16:00.000Z",
            "data": data, "stock": stock or [], "reserve": reserve or []}


class Stores:
    def __init__(self, make_store: Callable[[str], FakeStore]) -> None:
        self.fakes: dict[str, FakeStore] = {}
        self.seq: dict[str, int] = {}
        self.make = make_store

    def open(self, store: str) -> FakeStore:
        fake = self.make(store)
        fake.birth()
        self.fakes[store] = fake
        self.seq[store] = 0
        return fake

    def send(self, store: str, event: Callable[[int], dict[str, Any]]) -> None:
        self.seq[store] += 1
        self.fakes[store].send([event(self.seq[store])])
        self.fakes[store].wait_ack(self.seq[store])

    def commands(self, store: str, kind: str) -> list[dict[str, Any]]:
        fake = self.fakes[store]
        with fake.lock:
            return [c for c in fake.commands if c["type"] == kind]


def atp(central: Central, sku: str) -> dict[str, Any]:
    body = central.get("/v1/atp", params={"sku": sku, "detail": "true"})
    item: dict[str, Any] = body["skus"][0]
    return item


def order(order_id: str, qty: int = 2, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": order_id, "channel": "web",
                            "lines": [{"sku": "A-1", "qty": qty}], "fulfilment": "ship",
                            "ship_to": {"postcode": "3011"}, "customer_ref": "c-42"}
    body.update(extra)
    return body


@pytest.fixture
def loop(make_central: Callable[..., Central], make_store: Callable[[str], FakeStore]
         ) -> tuple[Central, Stores]:
    central = make_central(omni=OMNI)
    stores = Stores(make_store)
    for store, qty in (("S001", 5), ("S002", 3)):
        stores.open(store)
        stores.send(store, lambda seq, q=qty: receipt(seq, "A-1", q))
    wait_until(lambda: atp(central, "A-1")["atp"] == 8, what="network ATP of 8")
    return central, stores


def test_order_brokered_rejected_rebrokered_and_fulfilled(loop: tuple[Central, Stores]) -> None:
    central, stores = loop
    created = central.post("/v1/orders", order("W-1"), expect=201)
    assert created["state"] == "brokered"
    # the nearest store (S002, at the postcode) gets it, with the stock reserved
    assign = wait_until(lambda: stores.commands("S002", "order.assign"), what="assign")[0]
    assert assign["reserve"] == [{"sku": "A-1", "delta": 2}]
    assert assign["data"]["lines"] == [{"line_no": 1, "sku": "A-1", "qty": 2}]
    rid = assign["data"]["reservation_id"]
    assert central.stock("S002")["A-1"] == (3, 2)
    # idempotent: the same request again is the same order; another one conflicts
    again = central.post("/v1/orders", order("W-1"), expect=200)
    assert again["order_id"] == "W-1"
    conflict = central.http.post("/v1/orders", json=order("W-1", qty=3), headers=central.admin)
    assert (conflict.status_code, conflict.json()["code"]) == (409, "order_conflict")
    assert len(stores.commands("S002", "order.assign")) == 1

    stores.send("S002", lambda seq: store_event(
        seq, "order.rejected", {"order_id": "W-1", "reservation_id": rid, "reason": "not_found",
                                "lines": [{"sku": "A-1", "qty": 2}]},
        reserve=[{"sku": "A-1", "delta": -2}]))
    second = wait_until(lambda: stores.commands("S001", "order.assign"), what="re-broker")[0]
    rid2 = second["data"]["reservation_id"]
    assert rid2 != rid
    # S002 keeps its 3 units but promises 2 fewer until its next count
    cells = {c["store"]: c for c in atp(central, "A-1")["stores"]}
    assert cells["S002"]["hold"] == 2
    wait_until(lambda: {c["store"]: c for c in atp(central, "A-1")["stores"]}["S002"]["atp"] == 1,
               what="S002 ATP held down")

    for kind in ("order.accepted", "order.picked", "order.ready"):
        stores.send("S001", lambda seq, k=kind: store_event(
            seq, k, {"order_id": "W-1", "reservation_id": rid2}))
    stores.send("S001", lambda seq: store_event(
        seq, "fulfilment", {"order_id": "W-1", "order_ref": "W-1", "reservation_id": rid2,
                            "how": "shipped", "lines": [{"sku": "A-1", "qty": 2}]},
        stock=[{"sku": "A-1", "delta": -2}], reserve=[{"sku": "A-1", "delta": -2}]))
    detail = wait_until(lambda: (d := central.get("/v1/orders/W-1"))["state"] == "shipped" and d,
                        what="order shipped")
    events = [h["event"] for h in detail["history"]]
    assert events == ["received", "brokered", "rejected", "brokered", "accepted", "picked",
                      "ready", "shipped"]
    assert central.stock("S001")["A-1"] == (3, 0)
    # a count of the SKU at S002 lifts the hold
    stores.send("S002", lambda seq: store_event(
        seq, "count", {"count_id": "c1", "source": "rfid",
                       "lines": [{"sku": "A-1", "counted": 3, "expected": 3}]}))
    wait_until(lambda: {c["store"]: c for c in atp(central, "A-1")["stores"]}["S002"]["hold"]
               == 0, what="hold lifted by the count")


def test_unfillable_order_waits_then_brokers_when_stock_arrives(
        loop: tuple[Central, Stores]) -> None:
    central, stores = loop
    body = central.post("/v1/orders", order("W-2", qty=7, may_split=False), expect=201)
    assert body["state"] == "queued"
    assert atp(central, "A-1")["queued"] == 7
    stores.send("S001", lambda seq: receipt(seq, "A-1", 4))  # S001 now holds 9
    assign = wait_until(lambda: stores.commands("S001", "order.assign"), what="queued order")
    assert assign[0]["data"]["lines"][0]["qty"] == 7
    assert central.get("/v1/orders/W-2")["state"] == "brokered"


def test_split_order_and_cancel(loop: tuple[Central, Stores]) -> None:
    central, stores = loop
    body = central.post("/v1/orders", order("W-3", qty=7, may_split=True), expect=201)
    assert body["state"] == "brokered"
    detail = central.get("/v1/orders/W-3")
    shares = sorted((a["store"], a["lines"][0]["qty"]) for a in detail["assignments"])
    assert shares == [("S001", 5), ("S002", 2)]
    cancelled = central.post("/v1/orders/W-3/cancel", {"reason": "customer"})
    assert cancelled["state"] == "cancelled"
    for store in ("S001", "S002"):
        cancel = wait_until(lambda s=store: stores.commands(s, "order.cancel"), what="cancel")
        assert cancel[0]["data"]["reason"] == "customer"
        assert cancel[0]["reserve"] == []


def test_no_acceptance_in_time_moves_the_order(make_central: Callable[..., Central],
                                               make_store: Callable[[str], FakeStore]) -> None:
    central = make_central(omni=OMNI | {"accept_within": 1})
    stores = Stores(make_store)
    for store in ("S001", "S002"):
        stores.open(store)
        stores.send(store, lambda seq: receipt(seq, "A-1", 5))
    central.post("/v1/orders", order("W-4"), expect=201)
    wait_until(lambda: stores.commands("S002", "order.assign"), what="first assignment")
    cancel = wait_until(lambda: stores.commands("S002", "order.cancel"), what="timeout cancel")
    assert cancel[0]["data"]["reason"] == "timeout"
    wait_until(lambda: stores.commands("S001", "order.assign"), what="re-broker after timeout")
    # the timed-out reservation still counts until S002 releases it
    assert central.stock("S002")["A-1"] == (5, 2)
    events = [h["event"] for h in central.get("/v1/orders/W-4")["history"]]
    assert events[:4] == ["received", "brokered", "timeout", "brokered"]


def test_bad_queries_get_stable_codes(central: Central) -> None:
    def code(method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        r = central.http.request(method, path, headers=central.admin, **kwargs)
        return r.status_code, r.json()["code"]

    assert code("GET", "/v1/atp") == (400, "sku_required")
    assert code("GET", "/v1/atp", params={"sku": "bad sku!"}) == (422, "invalid_sku")
    assert code("GET", "/v1/atp", params=[("sku", f"S-{i}") for i in range(501)]) == (
        400, "too_many_skus")
    assert code("GET", "/v1/atp/changes", params={"since": "nope-1"}) == (410, "cursor_expired")
    assert code("POST", "/v1/orders", content=b"{") == (400, "invalid_json")
    assert code("POST", "/v1/orders", json={"order_id": "x"}) == (422, "validation_error")
    assert code("POST", "/v1/orders", json=order("W-9", fulfilment="pickup")) == (
        422, "validation_error")
    assert code("POST", "/v1/orders", json=order("W-9", ship_to={"postcode": "9999"})) == (
        422, "order_invalid")
    assert code("GET", "/v1/orders/none") == (404, "unknown_order")
    assert code("POST", "/v1/orders/none/cancel", json={}) == (404, "unknown_order")
    unauth = central.http.get("/v1/atp", params={"sku": "A-1"})
    assert unauth.status_code == 401


def test_changes_feed_names_what_moved(loop: tuple[Central, Stores]) -> None:
    central, stores = loop
    start = central.get("/v1/atp/changes")["cursor"]
    stores.send("S001", lambda seq: receipt(seq, "B-7", 4))

    def changed() -> list[dict[str, Any]] | None:
        body = central.get("/v1/atp/changes", params={"since": start})
        items: list[dict[str, Any]] = body["skus"]
        return [i for i in items if i["sku"] == "B-7" and i["atp"] == 4] or None

    wait_until(changed, what="B-7 in the changes feed")
    cursor = central.get("/v1/atp/changes", params={"since": start})["cursor"]
    assert central.get("/v1/atp/changes", params={"since": cursor})["skus"] == []


def test_silent_store_promises_less_then_nothing(make_central: Callable[..., Central],
                                                make_store: Callable[[str], FakeStore]) -> None:
    central = make_central(omni=OMNI | {"stale_after": 1, "silent_limit": 8})
    stores = Stores(make_store)
    stores.open("S001")
    stores.send("S001", lambda seq: receipt(seq, "A-1", 500))
    # 120 units sold in the last minute: 2 a second
    fake = stores.fakes["S001"]
    first = stores.seq["S001"] + 1
    fake.send([event(first + i, "A-1", -1) for i in range(120)])
    stores.seq["S001"] = first + 119
    fake.wait_ack(first + 119)

    def cell() -> dict[str, Any]:
        cells = atp(central, "A-1")["stores"]
        return dict(cells[0]) if cells else {"stale": 0, "excluded": "unprojected"}

    # as time passes without a word from the store, its ATP falls by 2 a second …
    falling = wait_until(lambda: (c := cell())["stale"] >= 4 and c, what="stale discount")
    assert falling["atp"] == 380 - falling["stale"]
    assert falling["excluded"] is None
    # … and past the silent limit it promises nothing
    silent = wait_until(lambda: (c := cell())["excluded"] == "silent" and c, what="silent")
    assert silent["atp"] == 0
    assert atp(central, "A-1")["atp"] == 0
    # the store speaks again: its ATP is back at once
    stores.send("S001", lambda seq: receipt(seq, "B-1", 1))
    back = wait_until(lambda: (c := cell())["excluded"] is None and c, what="back")
    assert back["atp"] == 380


def test_operator_closes_a_store(loop: tuple[Central, Stores]) -> None:
    central, stores = loop
    put = central.http.put("/v1/omni/stores/S002", headers=central.admin,
                           json={"lat": 51.92, "lon": 4.48, "closed": True})
    assert put.status_code == 200, put.text
    item = atp(central, "A-1")
    cells = {c["store"]: c for c in item["stores"]}
    assert (cells["S002"]["atp"], cells["S002"]["excluded"]) == (0, "closed")
    assert item["atp"] == 5
    central.post("/v1/orders", order("W-7"), expect=201)  # nearest is S002, but closed
    wait_until(lambda: stores.commands("S001", "order.assign"), what="assigned to S001")
    listed = {s["store"]: s for s in central.get("/v1/omni/stores")["stores"]}
    assert listed["S002"]["closed"] is True
    assert listed["S001"]["orders_today"] == 1
    bad = central.http.put("/v1/omni/stores/S002", headers=central.admin, json={"lat": 100})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
