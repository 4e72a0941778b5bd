"""The store side of the omnichannel loop with real processes: mosquitto, the reference
central (``edge-central serve``) and two store agents (``edge-agent run``). Central's
operator API issues ``order.assign`` / ``order.cancel`` as its brokering does; each store
answers through its local API, and every step reaches central exactly once. Then central's
own brokering times out an order a store does not accept, and the store releases it."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.orders.machine import hash_pickup_code
from tests.central.omni_processes import MUG, MUG_SCAN, StoreAgent
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import CentralProcess, wait_until

STORES = ["S1", "S2"]
# Central's brokering for the timeout test: S1 is nearest to postcode 1011, and a store
# that has not accepted 3 s after the assignment is timed out.
OMNI = """
[omni]
accept_within = 3
rebroker_every = 1
[omni.stores.S1]
lat = 52.37
lon = 4.90
[omni.stores.S2]
lat = 52.09
lon = 5.12
[omni.postcodes]
"1011" = [52.37, 4.90]
"""
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def chain(broker: Broker, tmp_path: Path) -> Iterator[tuple[CentralProcess, dict[str, StoreAgent]]]:
    central = CentralProcess(tmp_path / "central", broker.url, STORES, extra_config=OMNI)
    central.start()
    # Unix socket paths are limited to 107 bytes: the agents live in short directories.
    agents = {s: StoreAgent(Path(tempfile.mkdtemp(prefix=f"ea-omni-{s}-")), s, broker.url,
                            central) for s in STORES}
    try:
        for agent in agents.values():
            agent.start()
        yield central, agents
    finally:
        for agent in agents.values():
            agent.stop()
        central.terminate()
        for agent in agents.values():
            shutil.rmtree(agent.workdir, ignore_errors=True)


def central_events(central: CentralProcess, store: str, type_prefix: str = "order") -> list[str]:
    return [str(r[0]) for r in central.query(
        "SELECT type FROM events WHERE store = ? ORDER BY seq", (store,))
        if str(r[0]).startswith(type_prefix) or r[0] in ("fulfilment", "reservation.released")]


def assign(central: CentralProcess, store: str, order_id: str, *, attempt: int, qty: int,
           code_hash: str | None = None) -> None:
    data: dict[str, Any] = {
        "order_id": order_id, "reservation_id": f"ord-{order_id}-{attempt}",
        "channel": "web", "fulfilment": "pickup", "accept_by": "2099-01-01T00:00:00.000Z",
        "lines": [{"line_no": 1, "sku": "MUG-1", "qty": qty}]}
    if code_hash:
        data["pickup_code_hash"] = code_hash
    central.api("POST", f"/v1/stores/{store}/commands", json={"commands": [
        {"type": "order.assign", "data": data, "reserve": [{"sku": "MUG-1", "delta": qty}]}]})


def test_reject_then_pick_and_collect_at_another_store(
        chain: tuple[CentralProcess, dict[str, StoreAgent]]) -> None:
    central, agents = chain
    for store in STORES:
        central.api("POST", f"/v1/stores/{store}/catalog", json={"items": [MUG]})
        central.api("POST", f"/v1/stores/{store}/adjust", json={
            "reason": "opening stock", "lines": [{"sku": "MUG-1", "delta": 4}]})
    for agent in agents.values():
        wait_until(functools.partial(agent.has_stock, "MUG-1", (4, 0)), 30, f"{agent.store} stock")

    s1, s2 = agents["S1"], agents["S2"]
    assign(central, "S1", "W1", attempt=1, qty=2)
    wait_until(lambda: s1.get("/v1/orders")["count"] == 1, 30, "S1 sees the order")
    assert s1.stock("MUG-1") == (4, 2)
    wait_until(lambda: central.stock("S1").get("MUG-1") == (4, 2), 30, "central reserved S1")
    s1.step("/v1/orders/W1/reject", {"reason": "not_found"})
    wait_until(lambda: central_events(central, "S1") == ["order.rejected"], 30,
               "central got the rejection")
    wait_until(lambda: central.stock("S1").get("MUG-1") == (4, 0), 30, "S1 released")

    assign(central, "S2", "W1", attempt=2, qty=2, code_hash=hash_pickup_code("4711"))
    wait_until(lambda: s2.get("/v1/orders")["count"] == 1, 30, "S2 sees the order")
    s2.step("/v1/orders/W1/accept", {"by": "ann"})
    wrong = s2.post("/v1/orders/W1/pick", {"code": "5901234123457"})
    assert wrong.status_code == 422  # not even in this store's catalog
    s2.step("/v1/orders/W1/pick", {"code": MUG_SCAN})
    extra = s2.post("/v1/orders/W1/pick", {"code": MUG_SCAN, "qty": 2})
    assert (extra.status_code, extra.json()["code"]) == (409, "pick_exceeds_order")
    assert s2.step("/v1/orders/W1/pick", {"code": MUG_SCAN})["status"] == "picked"
    s2.step("/v1/orders/W1/ready")
    bad = s2.post("/v1/orders/W1/collect", {"code": "0000"})
    assert (bad.status_code, bad.json()["code"]) == (403, "pickup_code_wrong")
    assert s2.step("/v1/orders/W1/collect", {"code": "4711"})["status"] == "collected"
    wait_until(lambda: central_events(central, "S2") == [
        "order.accepted", "order.picked", "order.ready", "fulfilment"], 30,
        "central got every step once")
    wait_until(lambda: central.stock("S2").get("MUG-1") == (2, 0), 30, "S2 handed over")
    # A late cancel (central timed the attempt out) is ignored: nothing left to release.
    central.api("POST", "/v1/stores/S2/commands", json={"commands": [
        {"type": "order.cancel", "data": {"order_id": "W1", "reservation_id": "ord-W1-2",
                                          "reason": "timeout"}}]})
    wait_until(lambda: central.query("SELECT acked_cseq FROM stores WHERE store = 'S2'")[0][0]
               == central.query("SELECT issued_cseq FROM stores WHERE store = 'S2'")[0][0],
               30, "S2 acked the cancel")
    assert central_events(central, "S2")[-1] == "fulfilment"
    # Nothing is reserved anywhere, and the chain holds 4 + 2 + 4 mugs.
    assert {s: central.stock(s).get("MUG-1") for s in STORES} == {"S1": (4, 0), "S2": (2, 0)}
    assert {s: a.stock("MUG-1") for s, a in agents.items()} == {"S1": (4, 0), "S2": (2, 0)}


def test_an_order_not_accepted_in_time_is_released_and_rebrokered(
        chain: tuple[CentralProcess, dict[str, StoreAgent]]) -> None:
    """Central's timeout reaches the store as ``order.cancel`` (reason ``timeout``): the
    store releases the reservation, the clerk can no longer accept, the next store gets
    the order, and the reservation was never held by both stores at once."""
    central, agents = chain
    for store in STORES:
        central.api("POST", f"/v1/stores/{store}/catalog", json={"items": [MUG]})
        central.api("POST", f"/v1/stores/{store}/adjust", json={
            "reason": "opening stock", "lines": [{"sku": "MUG-1", "delta": 4}]})
    for agent in agents.values():
        wait_until(functools.partial(agent.has_stock, "MUG-1", (4, 0)), 30,
                   f"{agent.store} stock")
    s1, s2 = agents["S1"], agents["S2"]
    central.api("POST", "/v1/orders", json={
        "order_id": "T1", "channel": "web", "fulfilment": "ship",
        "lines": [{"sku": "MUG-1", "qty": 1}], "ship_to": {"postcode": "1011"}})
    wait_until(lambda: s1.get("/v1/orders", status="all")["count"] == 1, 60, "S1 got T1")
    # Nobody at S1 answers: central times the attempt out and S1 releases it.
    cancelled = wait_until(lambda: (o := s1.get("/v1/orders/T1"))["status"] == "cancelled"
                           and o, 60, "S1 released T1 on central's timeout")
    assert cancelled["history"][-1]["reason"] == "timeout"
    late = s1.post("/v1/orders/T1/accept")
    assert (late.status_code, late.json()["code"]) == (409, "order_closed")
    assert s1.stock("MUG-1") == (4, 0)
    wait_until(lambda: s2.get("/v1/orders")["count"] == 1, 60, "T1 re-brokered to S2")
    assert s2.stock("MUG-1") == (4, 1)
    wait_until(lambda: central_events(central, "S1") == ["reservation.released"], 30,
               "central got S1's release")
    wait_until(lambda: (central.stock("S1").get("MUG-1"), central.stock("S2").get("MUG-1"))
               == ((4, 0), (4, 1)), 30, "central holds T1 at S2 only")
