"""An online order's steps reach central exactly once, even when they happen offline:
real ledger, real mosquitto, the store's real StoreSync, a test-side central peer that
sends ``order.assign`` / ``order.cancel`` as the reference central does."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from edge_agent.orders.service import OrderService
from tests.edge_agent.retail.seed import STORE as STORE_SECTION
from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import PeerCentral, running_peer
from tests.helpers.running_store import RunningStore, running_store, settings_for

ITEM = {"sku": "MUG-1", "name": "Mug", "gtins": ["4006381333931"], "price": "12.90",
        "currency": "EUR", "uom": "unit", "active": True}


def assign_data(order_id: str, qty: int, attempt: int = 1) -> dict[str, Any]:
    return {"order_id": order_id, "reservation_id": f"ord-{order_id}-{attempt}",
            "channel": "web", "fulfilment": "pickup", "accept_by": "2099-01-01T00:00:00.000Z",
            "lines": [{"line_no": 1, "sku": "MUG-1", "qty": qty}]}


async def _seeded(peer: PeerCentral, store: RunningStore) -> None:
    await peer.wait_for(lambda: peer.snapshots_served == 1)
    await peer.send("catalog.upsert", {"items": [ITEM]})
    await peer.send("stock.adjust", {"reason": "replenishment"}, stock=[("MUG-1", 5)])


def types(peer: PeerCentral, store: RunningStore) -> list[str]:
    """Event types central applied, in order, read from the store's own copies."""
    seqs = {seq for _, seq, _ in peer.applied_events}

    def read(conn: Any) -> list[str]:
        return [str(r[1]) for r in conn.execute("SELECT seq, type FROM events ORDER BY seq")
                if r[0] in seqs]
    return store.ledger.read_blocking(read)


async def test_order_done_offline_reaches_central_once(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await _seeded(peer, store)
        await peer.send("order.assign", assign_data("W1", 2), reserve=[("MUG-1", 2)])
        await peer.wait_for(lambda: peer.store_cseq == 3)
        orders = OrderService(store.ledger, STORE_SECTION)
        assert (await orders.order("W1"))["status"] == "incoming"

        broker.stop()
        await peer.wait_for(lambda: not store.sync.connected)
        steps = [orders.accept("W1", by="ann", idempotency_key="a"),
                 orders.pick("W1", "4006381333931", idempotency_key="p1"),
                 orders.pick("W1", "4006381333931", idempotency_key="p2"),
                 orders.ready("W1", idempotency_key="r"),
                 orders.collect("W1", code=None, idempotency_key="c")]
        for coro in steps:
            async with asyncio.timeout(5):  # the queue never waits for the network
                await coro
        assert store.sync.connected is False
        assert (await orders.order("W1"))["status"] == "collected"

        broker.restart()
        await peer.wait_for(lambda: Counter(types(peer, store))["fulfilment"] == 1, limit=30)
        seen = types(peer, store)
        assert seen == ["order.accepted", "order.picked", "order.ready", "fulfilment"]
        assert peer.conflicts == 0
        assert peer.stock["MUG-1"] == [3, 0]
        assert await store.stock() == {"MUG-1": (3, 0)}


async def test_cancel_and_reject_reach_central(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await _seeded(peer, store)
        await peer.send("order.assign", assign_data("W1", 1), reserve=[("MUG-1", 1)])
        await peer.send("order.assign", assign_data("W2", 2), reserve=[("MUG-1", 2)])
        await peer.wait_for(lambda: peer.store_cseq == 4)
        assert peer.stock["MUG-1"] == [5, 3]
        orders = OrderService(store.ledger, STORE_SECTION)
        await orders.reject("W2", "damaged", idempotency_key="rej")
        await peer.send("order.cancel", {"order_id": "W1", "reservation_id": "ord-W1-1",
                                         "reason": "customer"})
        await peer.wait_for(lambda: peer.stock["MUG-1"] == [5, 0])
        await peer.wait_for(lambda: len(types(peer, store)) == 2)
        assert sorted(types(peer, store)) == ["order.rejected", "reservation.released"]
        # central resends the cancel (e.g. after a restart): applied once, ignored after
        await peer._publish_commands(peer.commands[-1:])
        await asyncio.sleep(0.3)
        assert sorted(types(peer, store)) == ["order.rejected", "reservation.released"]
        assert await store.stock() == {"MUG-1": (5, 0)}
