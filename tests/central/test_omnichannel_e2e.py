"""The omnichannel loop end to end, every part real: mosquitto, the reference central
(``edge-central serve`` with its ``[omni]`` section) and three store agents
(``edge-agent run``) worked through their local APIs over Unix sockets.

- An online ship order is brokered to the store nearest the customer (S1).
- S1 rejects it (not found): central re-brokers it to the next store (S2) and holds S1's
  ATP down; at no moment do two stores hold the order's reservation.
- S3 goes offline mid-way: its ATP first drops by its sell-through while silent, then to
  zero past the silent limit (as configured below).
- S2's link is cut (a fault proxy between it and the broker): offline, it accepts the
  order, picks it by scan (a wrong item and an extra unit are refused), packs it and
  ships it; when the link returns central learns every step, once, in order.
- A pickup order at S2 is picked by scan and collected with the customer's code (a wrong
  code is refused). Nothing is reserved at the end, on either side.

A pickup order is fulfilled at its pickup store only (central's brokering rule), so the
rejection and re-brokering are shown with the ship order, and the collection with the
pickup order.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.orders.machine import hash_pickup_code
from tests.central.omni_processes import MUG, MUG_SCAN, StoreAgent
from tests.helpers.faultproxy import FaultProxy
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import CentralProcess, wait_until

STORES = ["S1", "S2", "S3"]
CUP = {"sku": "CUP-1", "name": "Cup", "gtins": ["5901234123457"], "price": "4.50",
       "currency": "EUR", "uom": "unit", "active": True}
CUP_SCAN = "5901234123457"
STALE_AFTER = 10  # s without a message from a store before its ATP is discounted
SILENT_LIMIT = 25  # s after which a silent store contributes nothing
OMNI = f"""
[omni]
stale_after = {STALE_AFTER}
silent_limit = {SILENT_LIMIT}
rebroker_every = 1
accept_within = 600
[omni.stores.S1]
lat = 52.37
lon = 4.90
[omni.stores.S2]
lat = 52.09
lon = 5.12
[omni.stores.S3]
lat = 51.44
lon = 5.47
[omni.postcodes]
"1011" = [52.37, 4.90]
"""
pytestmark = pytest.mark.timeout(400)


Chain = tuple[CentralProcess, dict[str, StoreAgent], FaultProxy]


@pytest.fixture
def chain(broker: Broker, tmp_path: Path) -> Iterator[Chain]:
    central = CentralProcess(tmp_path / "central", broker.url, STORES, extra_config=OMNI)
    central.start()
    link = FaultProxy(broker.port).start()  # S2's link to the broker, to cut it
    # Unix socket paths are limited to 107 bytes: the agents live in short directories.
    agents = {s: StoreAgent(Path(tempfile.mkdtemp(prefix=f"ea-e2e-{s}-")), s,
                            link.url if s == "S2" else broker.url, central) for s in STORES}
    try:
        for agent in agents.values():
            agent.start()
        yield central, agents, link
    finally:
        for agent in agents.values():
            agent.stop()
        link.stop()
        central.terminate()
        for agent in agents.values():
            shutil.rmtree(agent.workdir, ignore_errors=True)


def atp(central: CentralProcess, sku: str) -> dict[str, Any]:
    item: dict[str, Any] = central.api("GET", "/v1/atp", params={"sku": sku,
                                                                 "detail": "true"})["skus"][0]
    return item


def atp_of(central: CentralProcess, store: str, sku: str = "MUG-1") -> dict[str, Any]:
    cell: dict[str, Any] = {c["store"]: c for c in atp(central, sku)["stores"]}[store]
    return cell


def order_types(central: CentralProcess, store: str) -> list[str]:
    """The order facts central applied from ``store``, in the store's order."""
    return [str(r[0]) for r in central.query(
        "SELECT type FROM events WHERE store = ? ORDER BY epoch, seq", (store,))
        if str(r[0]).startswith("order.") or r[0] in ("fulfilment", "reservation.released")]


def open_reservations(agents: dict[str, StoreAgent], order_id: str) -> dict[str, int]:
    """How many open reservations each store's own ledger holds for ``order_id``."""
    out = {}
    for store, agent in agents.items():
        body = agent.get("/v1/reservations", status="open")
        out[store] = sum(1 for r in body["reservations"] if r["order_ref"] == order_id)
    return out


def central_reserved(central: CentralProcess) -> dict[str, int]:
    return {s: central.stock(s).get("MUG-1", (0, 0))[1] for s in STORES}


def test_order_brokered_rejected_rebrokered_picked_shipped_and_collected(
        chain: Chain) -> None:
    central, agents, s2_link = chain
    s1, s2, s3 = agents["S1"], agents["S2"], agents["S3"]
    for store in STORES:
        central.api("POST", f"/v1/stores/{store}/catalog", json={"items": [MUG, CUP]})
        central.api("POST", f"/v1/stores/{store}/adjust", json={
            "reason": "opening stock", "lines": [{"sku": "MUG-1", "delta": 4},
                                                 {"sku": "CUP-1", "delta": 4}]})
    for agent in agents.values():
        wait_until(functools.partial(agent.has_stock, "MUG-1", (4, 0)), 60, f"{agent.store} stock")
    # S3 sells two mugs: a sell-through rate for its staleness discount.
    sold = s3.post("/v1/sales", {"terminal": "T1", "lines": [{"barcode": MUG_SCAN, "qty": 2}],
                                 "payments": [{"method": "cash", "amount": "25.80"}]})
    assert sold.status_code == 201, sold.text
    wait_until(lambda: atp(central, "MUG-1")["atp"] == 10, 60, "network ATP 4 + 4 + 2")

    # -- an online ship order goes to the store nearest the customer -------------------------
    created = central.api("POST", "/v1/orders", json={
        "order_id": "W1", "channel": "web", "fulfilment": "ship",
        "lines": [{"sku": "MUG-1", "qty": 2}], "ship_to": {"postcode": "1011"},
        "customer_ref": "c-42"})
    assert created["state"] == "brokered"
    wait_until(lambda: s1.get("/v1/orders")["count"] == 1, 60, "S1 sees W1")
    incoming = s1.get("/v1/orders/W1")
    assert (incoming["status"], incoming["fulfilment"]) == ("incoming", "ship")
    assert s1.stock("MUG-1") == (4, 2)
    assert open_reservations(agents, "W1") == {"S1": 1, "S2": 0, "S3": 0}

    # -- S1 cannot find it: rejected, re-brokered to S2, never reserved twice -----------------
    rejected = s1.step("/v1/orders/W1/reject", {"reason": "not_found"})
    assert rejected["status"] == "rejected"
    assert s1.stock("MUG-1") == (4, 0)
    wait_until(lambda: s2.get("/v1/orders")["count"] == 1, 60, "W1 re-brokered to S2")
    assert s2.get("/v1/orders/W1")["reservation_id"] != incoming["reservation_id"]
    assert open_reservations(agents, "W1") == {"S1": 0, "S2": 1, "S3": 0}
    wait_until(lambda: central_reserved(central) == {"S1": 0, "S2": 2, "S3": 0}, 60,
               "central holds W1 at S2 only")
    assert atp_of(central, "S1")["hold"] == 2  # S1 promises less until its next count

    # -- S3 goes offline and S2 loses its link, both mid-way -----------------------------
    s3.stop()
    s2_link.refuse(300)  # until healed below
    s2_link.reset()
    wait_until(lambda: not s2.online(), 60, "S2 offline")
    # S3's ATP first drops by its sell-through times its silence (not yet excluded) ...
    dropped = wait_until(lambda: (c := atp_of(central, "S3"))["stale"] >= 1 and c, 60,
                         "S3's ATP discounted while silent")
    assert dropped["atp"] == max(0, 2 - dropped["stale"])
    assert dropped["excluded"] is None

    # S2 works W1 offline: accepted, picked by scan, packed and shipped.
    s2.step("/v1/orders/W1/accept", {"by": "ann"})
    wrong = s2.post("/v1/orders/W1/pick", {"code": CUP_SCAN})
    assert (wrong.status_code, wrong.json()["code"]) == (409, "pick_wrong_item")
    s2.step("/v1/orders/W1/pick", {"code": MUG_SCAN})
    extra = s2.post("/v1/orders/W1/pick", {"code": MUG_SCAN, "qty": 2})
    assert (extra.status_code, extra.json()["code"]) == (409, "pick_exceeds_order")
    assert s2.step("/v1/orders/W1/pick", {"code": MUG_SCAN})["status"] == "picked"
    s2.step("/v1/orders/W1/pack", {"parcels": 1})
    s2.step("/v1/orders/W1/ready")
    assert s2.step("/v1/orders/W1/ship", {"tracking": "PN-1"})["status"] == "shipped"
    assert s2.stock("MUG-1") == (2, 0)
    assert order_types(central, "S2") == []  # nothing has reached central yet
    assert central.api("GET", "/v1/orders/W1")["state"] != "shipped"

    # Meanwhile S3 has been silent past the limit: its ATP is zero.
    wait_until(lambda: atp_of(central, "S3")["excluded"] == "silent", 90, "S3 silent")
    assert atp_of(central, "S3")["atp"] == 0

    # S2's link returns: every step it took offline reaches central, once, in order.
    s2_link.heal()
    wait_until(s2.online, 60, "S2 back online")
    wait_until(lambda: central.api("GET", "/v1/orders/W1")["state"] == "shipped", 60,
               "central: W1 shipped")
    assert order_types(central, "S2") == [
        "order.accepted", "order.picked", "order.packed", "order.ready", "fulfilment"]

    # -- a pickup order at S2, collected with the customer's code -------------------------
    central.api("POST", "/v1/orders", json={
        "order_id": "W2", "channel": "app", "fulfilment": "pickup", "pickup_store": "S2",
        "lines": [{"sku": "MUG-1", "qty": 1}], "pickup_code_hash": hash_pickup_code("4711")})
    wait_until(lambda: s2.get("/v1/orders")["count"] == 1, 60, "S2 sees W2")
    s2.step("/v1/orders/W2/accept")
    s2.step("/v1/orders/W2/pick", {"code": MUG_SCAN})
    s2.step("/v1/orders/W2/ready")
    bad = s2.post("/v1/orders/W2/collect", {"code": "1234"})
    assert (bad.status_code, bad.json()["code"]) == (403, "pickup_code_wrong")
    assert s2.step("/v1/orders/W2/collect", {"code": "4711"})["status"] == "collected"
    wait_until(lambda: central.api("GET", "/v1/orders/W2")["state"] == "collected", 60,
               "central: W2 collected")

    # -- every fact once; nothing reserved; stock agrees on both sides -------------------
    assert order_types(central, "S1") == ["order.rejected"]
    s2_types = order_types(central, "S2")
    assert Counter(s2_types) == Counter({
        "order.accepted": 2, "order.picked": 2, "order.ready": 2, "fulfilment": 2,
        "order.packed": 1})
    assert central_reserved(central) == {"S1": 0, "S2": 0, "S3": 0}
    assert (s1.stock("MUG-1"), s2.stock("MUG-1")) == ((4, 0), (1, 0))
    assert central.stock("S2")["MUG-1"] == (1, 0)
    history = [h["event"] for h in central.api("GET", "/v1/orders/W1")["history"]]
    assert history.count("brokered") == 2
    assert "rejected" in history
