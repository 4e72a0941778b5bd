"""Commands central → store (§5), birth/death (§6), digest (§7) and the snapshot (§5.3),
against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from sync.wire import MAX_ITEM_BYTES, canonical_json, digest_lines
from tests.central.conftest import Central, FakeStore, event, wait_until


def adjust(central: Central, store: str, sku: str, delta: int) -> int:
    out = central.post(f"/v1/stores/{store}/adjust",
                       {"lines": [{"sku": sku, "delta": delta}], "reason": "replenishment"})
    cseq: int = out["commands"][0]["cseq"]
    return cseq


def test_commands_have_gapless_cseq_and_go_to_online_store(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    central.sync()
    assert [adjust(central, "S001", "A-100", 24) for _ in range(3)] == [1, 2, 3]
    wait_until(lambda: store.cseqs() == [1, 2, 3], what="three commands")
    command = store.commands[0]
    assert command["type"] == "stock.adjust"
    assert command["stock"] == [{"sku": "A-100", "delta": 24}]
    assert central.stock("S001") == {"A-100": (72, 0)}


def test_birth_resends_from_applied_cseq(central: Central,
                                         make_store: Callable[[str], FakeStore]) -> None:
    for _ in range(4):
        adjust(central, "S001", "A-1", 1)  # store offline: stored, not sent
    store = make_store("S001")
    central.sync()
    assert store.cseqs() == []
    store.birth(applied_cseq=2)
    wait_until(lambda: store.cseqs() == [3, 4], what="resend from 3")


def test_birth_without_applied_cseq_waits_for_command_ack(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    for _ in range(3):
        adjust(central, "S001", "A-1", 1)
    store = make_store("S001")
    store.birth(applied_cseq=None)
    central.sync()
    time.sleep(0.3)
    assert store.cseqs() == []
    store.command_ack(1)
    wait_until(lambda: store.cseqs() == [2, 3], what="send after the store's ack")


def test_lower_ack_resends_from_it(central: Central,
                                   make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    for _ in range(3):
        adjust(central, "S001", "A-1", 1)
    wait_until(lambda: store.cseqs() == [1, 2, 3])
    store.command_ack(3)
    central.sync()
    store.commands.clear()
    store.command_ack(1)  # a restored store reports less than before
    wait_until(lambda: store.cseqs() == [2, 3], what="resend from the lower watermark")


def test_ack_without_progress_goes_back(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    for _ in range(3):
        adjust(central, "S001", "A-1", 1)
    wait_until(lambda: store.cseqs() == [1, 2, 3])
    store.command_ack(1)
    central.sync()
    store.commands.clear()
    store.command_ack(1)  # no progress while 2..3 were sent: go back
    wait_until(lambda: store.cseqs() == [2, 3], what="go-back")
    # the once-a-second limit is checked with a controlled clock in test_core.py


def test_resend_after_timeout(make_central: Callable[..., Central],
                              make_store: Callable[[str], FakeStore]) -> None:
    central = make_central(resend_after=0.5)
    store = make_store("S001")
    store.birth(applied_cseq=0)
    adjust(central, "S001", "A-1", 1)
    wait_until(lambda: store.cseqs() == [1])
    wait_until(lambda: store.cseqs() == [1, 1], timeout=5, what="timeout resend")
    store.command_ack(1)
    central.sync()
    n = len(store.cseqs())
    time.sleep(1.0)
    assert len(store.cseqs()) == n  # acknowledged: no more resends


def test_stale_death_is_ignored_and_birth_rollback_alerts(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(1), event(2), event(3)])
    store.wait_ack(3)
    store.birth(last_seq=3, applied_cseq=0)
    store.death(boot_id="an-older-boot")
    central.sync()
    assert wait_until(lambda: central.get("/v1/stores/S001")["state"] == "online")
    store.death()
    wait_until(lambda: central.get("/v1/stores/S001")["state"] == "offline")
    store.birth(last_seq=1, applied_cseq=0, boot_id="new-boot")
    wait_until(lambda: central.alerts("history_rolled_back"), what="rollback alert")


def test_reservations_and_count_requests_close_from_events(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    out = central.post("/v1/stores/S001/reservations",
                       {"reservation_id": "R1", "order_ref": "WEB-1",
                        "lines": [{"sku": "A-1", "qty": 2}]})
    assert out["reservation_id"] == "R1"
    central.post("/v1/stores/S001/reservations",
                 {"reservation_id": "R1", "order_ref": "WEB-1",
                  "lines": [{"sku": "A-1", "qty": 2}]}, expect=422)  # never two creates
    central.post("/v1/stores/S001/reservations",
                 {"reservation_id": "R2", "order_ref": "WEB-2",
                  "lines": [{"sku": "B-1", "qty": 1}]})
    central.http.delete("/v1/stores/S001/reservations/R2", headers=central.admin)
    central.post("/v1/stores/S001/counts", {"count_id": "C1", "skus": ["A-1"]})
    assert central.stock("S001") == {"A-1": (0, 2), "B-1": (0, 1)}
    snap = central.http.get("/v1/stores/S001/snapshot",
                            headers={"Authorization": "Bearer token-s001"}).json()
    assert snap["through_cseq"] == 4
    assert {r["reservation_id"]: r["cancel_requested"] for r in snap["reservations"]} == {
        "R1": False, "R2": True}
    assert snap["count_requests"] == [{"count_id": "C1", "skus": ["A-1"]}]
    store.send([
        event(1, "A-1", -2, "fulfilment", data={"reservation_id": "R1", "order_ref": "WEB-1"},
              reserve=[{"sku": "A-1", "delta": -2}]),
        event(2, "B-1", 0, "reservation.released",
              data={"reservation_id": "R2", "reason": "cancelled"}, stock=[],
              reserve=[{"sku": "B-1", "delta": -1}]),
        event(3, "A-1", 1, "count", data={"count_id": "C1"}),
    ])
    store.wait_ack(3)
    snap = central.http.get("/v1/stores/S001/snapshot",
                            headers={"Authorization": "Bearer token-s001"}).json()
    assert snap["reservations"] == []
    assert snap["count_requests"] == []
    assert snap["stock"] == [{"sku": "A-1", "on_hand": -1, "reserved": 0}]


def test_catalog_import_splits_into_64k_commands(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    items = [{"sku": f"SKU-{i:05d}", "name": "Product " + "x" * 150, "gtins": ["4006381333931"],
              "price": "12.90", "currency": "EUR", "uom": "unit", "active": True}
             for i in range(800)]
    out = central.post("/v1/stores/S001/catalog", {"items": items})
    n = len(out["commands"])
    assert n > 3
    wait_until(lambda: len(store.commands) == n, what="catalog commands")
    assert all(len(canonical_json(c)) <= MAX_ITEM_BYTES for c in store.commands)
    received = [i["sku"] for c in store.commands for i in c["data"]["items"]]
    assert received == [i["sku"] for i in items]
    snap = central.http.get("/v1/stores/S001/snapshot",
                            headers={"Authorization": "Bearer token-s001"}).json()
    assert len(snap["catalog"]) == 800
    central.post("/v1/stores/S001/catalog", {"items": [{"sku": "bad sku", "name": "x",
                                                        "price": "1", "currency": "EUR"}]},
                 expect=422)


def test_snapshot_auth(central: Central) -> None:
    url = "/v1/stores/S001/snapshot"
    assert central.http.get(url).status_code == 401
    assert central.http.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert central.http.get(url, headers={"Authorization": "Basic token-s001"}
                            ).status_code == 401
    assert central.http.get(url, headers={"Authorization": "Bearer token-s002"}
                            ).status_code == 401  # no oracle: as an unknown token
    ok = central.http.get(url, headers={"Authorization": "Bearer token-s001"})
    assert ok.status_code == 200
    assert ok.json() == {"v": 1, "store": "S001", "through_cseq": 0, "epochs": {},
                         "catalog": [], "stock": [], "reservations": [], "count_requests": [],
                         "recalls": []}
    # operator endpoints need the admin token, not a store's
    assert central.http.get("/v1/status").status_code == 401
    assert central.http.get("/v1/status", headers={"Authorization": "Bearer token-s001"}
                            ).status_code == 401


def test_snapshot_reflects_events_and_commands(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    adjust(central, "S001", "A-1", 10)
    store.send([event(1, "A-1", -3), event(2, "B-2", 5, "receipt")])
    store.wait_ack(2)
    snap = httpx.get(f"{central.url}/v1/stores/S001/snapshot",
                     headers={"Authorization": "Bearer token-s001"}).json()
    assert snap["through_cseq"] == 1
    assert snap["epochs"] == {store.epoch: 2}
    assert snap["stock"] == [{"sku": "A-1", "on_hand": 7, "reserved": 0},
                             {"sku": "B-2", "on_hand": 5, "reserved": 0}]


def _digest(store: FakeStore, rows: list[tuple[str, int, int]], through_seq: int,
            through_cseq: int) -> None:
    skus, sha = digest_lines(rows)
    body = {"v": 1, "store": store.store, "epoch": store.epoch, "through_seq": through_seq,
            "through_cseq": through_cseq, "skus": skus, "sha256": sha}
    store.publish(store.topics.digest, orjson.dumps(body))


def test_digest_match_and_mismatch_resync(central: Central,
                                          make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    adjust(central, "S001", "A-1", 10)
    wait_until(lambda: store.cseqs() == [1])
    store.command_ack(1)
    store.send([event(1, "A-1", -3), event(2, "A-1", -1)])
    store.wait_ack(2)
    # the store's state at seq 1 / cseq 1, though central has already applied seq 2
    _digest(store, [("A-1", 7, 0)], through_seq=1, through_cseq=1)
    central.sync()
    result = wait_until(lambda: central.get("/v1/stores/S001")["digest_result"])
    assert result["match"] is True
    assert central.alerts("stock_mismatch") == []
    _digest(store, [("A-1", 99, 0)], through_seq=2, through_cseq=1)
    wait_until(lambda: central.alerts("stock_mismatch"), what="mismatch alert")
    wait_until(lambda: [c["type"] for c in store.commands] == ["stock.adjust", "resync"],
               what="resync command")


def test_digest_waits_until_events_are_applied(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.send([event(1, "A-1", -1)])
    store.wait_ack(1)
    _digest(store, [("A-1", -2, 0)], through_seq=2, through_cseq=0)
    central.sync()
    time.sleep(0.2)
    assert central.get("/v1/stores/S001")["digest_result"] is None
    store.send([event(2, "A-1", -1)])
    store.wait_ack(2)
    result = wait_until(lambda: central.get("/v1/stores/S001")["digest_result"])
    assert result["match"] is True


def test_mismatch_with_quarantine_sends_no_resync(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    bad = event(1)
    bad["stock"] = "oops"
    store.send([bad])
    store.wait_ack(1)
    _digest(store, [("A-1", -1, 0)], through_seq=1, through_cseq=0)
    wait_until(lambda: central.alerts("stock_mismatch"), what="mismatch alert")
    central.sync()
    time.sleep(0.2)
    assert store.commands == []


@pytest.mark.parametrize("spec", [
    {"type": "stock.adjust", "data": {"reason": "x"}, "stock": [{"sku": "A", "delta": 1.5}]},
    {"type": "reservation.cancel", "data": {"reservation_id": "nope"}},
    {"type": "count.request", "data": {"count_id": "c", "skus": []}},
    {"type": "no.such.type"},
])
def test_invalid_commands_are_rejected_without_consuming_cseq(
        central: Central, spec: dict[str, object]) -> None:
    central.post("/v1/stores/S001/commands", {"commands": [spec]}, expect=422)
    assert adjust(central, "S001", "A-1", 1) == 1
