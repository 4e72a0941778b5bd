"""End to end: StoreSync over a real ledger ↔ real mosquitto ↔ a test-side central peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.ledger import Ledger
from edge_agent.sync_adapter import LedgerStorePort
from sync.errors import SnapshotError
from sync.store import StoreSync
from sync.store_port import DeviceReport
from sync.store_settings import SyncSettings
from sync.wire import canonical_json, loads, now_ts
from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import STORE, running_peer
from tests.helpers.progress import until_progress
from tests.helpers.running_store import running_store, settings_for


async def test_sales_flow_commands_and_digest(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        # first start with a new database: resync before anything else, then birth
        await peer.wait_for(lambda: peer.snapshots_served == 1)
        await peer.wait_for(lambda: any(s["state"] == "online" for s in peer.statuses))
        await store.record(2500)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 2500)
        assert peer.duplicates == 0
        assert [s for _, s, _ in peer.applied_events] == list(range(1, 2501))
        await peer.wait_for(lambda: store.sync.machine.stored(epoch) == 2500)
        await asyncio.sleep(0.2)
        assert (await store.port.epochs())[-1].acked_seq == 2500

        await peer.send("stock.adjust", {"reason": "replenishment"}, stock=[("SKU-1", 100)])
        await peer.send("catalog.upsert", {"items": [
            {"sku": "SKU-1", "name": "Mug", "gtins": ["4006381333931"], "price": "12.90",
             "currency": "EUR", "uom": "unit", "active": True}]})
        await peer.send("reservation.create", {"reservation_id": "R1", "order_ref": "O1",
                                               "lines": [{"sku": "SKU-1", "qty": 3}]},
                        reserve=[("SKU-1", 3)])
        await peer.send("count.request", {"count_id": "K1", "skus": ["SKU-2"]})
        await peer.send("reservation.cancel", {"reservation_id": "R1"})
        await peer.wait_for(lambda: peer.store_cseq == 5)
        # the cancel became a reservation.released event, delivered to central
        await peer.wait_for(lambda: peer.applied.get(epoch) == 2501)
        assert store.sync.counters.commands_applied == 5
        assert "R1" not in peer.reservations

        # one digest followed the first resync; ask for another now
        await peer.wait_for(lambda: len(peer.digests) == 1)
        assert peer.digests[0]["through_seq"] == 0
        store.sync.request_digest()
        await peer.wait_for(lambda: len(peer.digests) == 2)
        digest = peer.digests[1]
        assert (digest["skus"], digest["sha256"]) == peer.digest()
        assert (digest["through_seq"], digest["through_cseq"]) == (2501, 5)
        assert await store.stock() == {s: (v[0], v[1]) for s, v in peer.stock.items()
                                       if v != [0, 0]}
        # commands are applied once even when central resends them
        await peer._publish_commands(peer.commands)
        await asyncio.sleep(0.3)
        assert store.sync.counters.commands_applied == 5
        assert store.sync.counters.dropped == {}
    # a clean shutdown publishes the death itself
    assert peer.statuses[-1]["state"] in ("online", "offline")


async def test_shutdown_publishes_offline_status(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer:
        async with running_store(store_db, settings_for(broker.url, peer)) as store:
            await peer.wait_for(lambda: any(s["state"] == "online" for s in peer.statuses))
            boot = store.sync.boot_id
        await peer.wait_for(lambda: peer.statuses[-1]["state"] == "offline")
        assert peer.statuses[-1]["boot_id"] == boot
        assert peer.statuses[-1]["store"] == STORE


async def test_broker_down_store_keeps_recording_exactly_once(
    broker: Broker, store_db: Path,
) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await store.record(300)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 300)
        broker.stop()
        # recording never waits for the network
        for i in range(5):
            async with asyncio.timeout(2):
                await store.record(200, start=300 + 200 * i)
        assert store.sync.connected is False
        broker.restart()  # no persistence: retained acks are gone
        await peer.wait_for(lambda: peer.applied.get(epoch) == 1300, limit=20)
        assert [s for _, s, _ in peer.applied_events] == list(range(1, 1301))
        assert peer.conflicts == 0
        assert await store.stock() == {s: (v[0], v[1]) for s, v in peer.stock.items()
                                       if v != [0, 0]}
        assert store.sync.counters.reconnects >= 1


async def test_duplicate_of_a_raised_publish_is_counted_once(
    broker: Broker, store_db: Path,
) -> None:
    # acks not retained: after the reconnect the store resends from its stored watermark,
    # as it must when it cannot know whether the raised publish arrived.
    async with running_peer(broker, retain_acks=False) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await store.record(500)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 500)
        # an MQTT-level duplicate (paho's DUP resend) of an already applied batch
        async with aiomqtt.Client("127.0.0.1", broker.port) as raw:
            await raw.publish(f"retail/v1/stores/{STORE}/events", peer.raw_batches[0], qos=1)
        await peer.wait_for(lambda: peer.duplicates > 0)
        assert peer.applied[epoch] == 500
        assert len(peer.applied_events) == 500
        assert peer.conflicts == 0


async def test_lost_event_batch_is_repaired_by_go_back(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker, drop_event_batches={2, 3}) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await store.record(1000)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 1000)
        assert [s for _, s, _ in peer.applied_events] == list(range(1, 1001))
        assert store.sync.counters.gobacks >= 1
        assert peer.gaps >= 1


async def test_lost_command_is_repaired_and_applied_once(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker, drop_command_publishes={2}) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await peer.wait_for(lambda: peer.snapshots_served == 1)
        await peer.wait_for(lambda: peer.store_cseq == 0)
        for delta in (1, 10, 100):
            await peer.send("stock.adjust", {"reason": "replenishment"}, stock=[("X", delta)])
        await peer.wait_for(lambda: peer.store_cseq == 3, limit=10)
        assert (await store.stock())["X"] == (111, 0)
        assert store.sync.counters.command_gaps >= 1


async def test_stale_retained_ack_of_an_old_epoch(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer:
        # a retained ack of an epoch this (new) database never had, far beyond its seqs
        await peer.ack("epoch-of-a-replaced-disk", 99999, retain=True)
        async with running_store(store_db, settings_for(broker.url, peer)) as store:
            await store.record(50)
            epoch = store.port.current_epoch
            await peer.wait_for(lambda: peer.applied.get(epoch) == 50)
            assert store.sync.counters.foreign_acks >= 1
            assert store.sync.counters.lost_histories == 0
            assert store.port.current_epoch == epoch


async def test_lost_history_starts_a_new_epoch_and_resyncs(
    broker: Broker, store_db: Path,
) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await store.record(20)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 20)
        served = peer.snapshots_served
        # central says it applied 30 of this epoch: our history was rolled back
        peer.applied[epoch] = 30
        await peer.ack(epoch, 30)
        await peer.wait_for(lambda: store.port.current_epoch != epoch)
        await peer.wait_for(lambda: peer.snapshots_served > served)
        new_epoch = store.port.current_epoch
        # the alert is the first event of the new epoch, and it reaches central
        await peer.wait_for(lambda: peer.applied.get(new_epoch, 0) >= 1)
        assert store.sync.counters.lost_histories == 1


async def test_resync_rebuilds_the_state_of_a_store_that_lost_nothing(
    broker: Broker, store_db: Path,
) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await store.record(400, sku_count=7)
        await peer.send("stock.adjust", {"reason": "replenishment"}, stock=[("SKU-3", 50)])
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 400 and peer.store_cseq == 1)
        broker.stop()
        await store.record(100, sku_count=7, start=400)  # central has not seen these
        truth = await store.stock()
        # the local projection drifts behind our back
        await store.ledger.write(lambda tx: tx.apply_deltas(stock=[("SKU-1", 77)]))
        broker.restart()
        await store.sync.resync_now("technician")
        assert await store.stock() == truth
        await peer.wait_for(lambda: peer.applied.get(epoch) == 500, limit=20)
        assert await store.stock() == {s: (v[0], v[1]) for s, v in peer.stock.items()
                                       if v != [0, 0]}


async def test_resync_command_ack_waits_for_the_snapshot(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        await peer.wait_for(lambda: peer.store_cseq == 0)
        peer.fail_snapshots = 2
        await peer.send("stock.adjust", stock=[("A", 4)])
        await peer.send("resync")
        await peer.wait_for(lambda: peer.store_cseq == 1)
        await peer.wait_for(lambda: peer.store_cseq == 2, limit=10)
        assert peer.fail_snapshots == 0
        assert store.sync.counters.resync_failures == 2
        assert (await store.stock())["A"] == (4, 0)


async def test_health_devices_and_dropped_messages(broker: Broker, store_db: Path) -> None:
    async with running_peer(broker) as peer, \
            running_store(store_db, settings_for(broker.url, peer)) as store:
        store.port.set_device_status(DeviceReport("till-1", "scanner", "connected", "/dev/x",
                                                  now_ts()))
        await peer.wait_for(lambda: "till-1" in peer.devices)
        assert loads(peer.devices["till-1"])["state"] == "connected"
        store.port.remove_device("till-1")
        await peer.wait_for(lambda: peer.devices.get("till-1") == b"")
        await peer.wait_for(lambda: len(peer.health) >= 1)
        assert peer.health[0]["devices"]["total"] in (0, 1)
        async with aiomqtt.Client("127.0.0.1", broker.port) as raw:
            topic = f"retail/v1/stores/{STORE}/commands"
            await raw.publish(topic, b"not json", qos=1)
            await raw.publish(topic, canonical_json({"v": 2, "store": STORE, "commands": []}),
                              qos=1)
            await raw.publish(topic, canonical_json({"v": 1, "store": "S999", "commands": [
                {"cseq": 1, "id": "x", "type": "resync", "ts": now_ts()}]}), qos=1)
        await peer.wait_for(lambda: sum(store.sync.counters.dropped.values()) == 3)
        assert store.sync.counters.dropped == {
            "commands:invalid_json": 1, "commands:version": 1, "commands:store": 1}
        await asyncio.sleep(0.1)
        payload = await store.sync.reports.health_payload()
        assert loads(payload)["clock_offset_ms"] is None or \
            abs(loads(payload)["clock_offset_ms"]) < 5000


async def test_acknowledged_events_are_pruned_after_retention(
    broker: Broker, store_db: Path,
) -> None:
    settings = settings_for(broker.url, None, retention_days=0, prune_interval=0.2)
    async with running_peer(broker) as peer, running_store(store_db, settings) as store:
        await store.record(300)
        epoch = store.port.current_epoch
        await peer.wait_for(lambda: peer.applied.get(epoch) == 300)

        async def remaining() -> int:
            return await store.ledger.read(
                lambda conn: int(conn.execute("SELECT count(*) FROM events").fetchone()[0]))

        async def pruned() -> bool:
            return await remaining() == 0

        await until_progress(pruned, remaining, 10.0, "acknowledged events pruned", 0.1)
        assert store.sync.counters.events_pruned == 300
        # pruning never touches what is not acknowledged yet
        broker.stop()
        await store.record(5, start=300)
        await asyncio.sleep(0.5)
        assert await remaining() == 5


async def test_resync_on_demand_needs_a_central_url(store_db: Path) -> None:
    with Ledger.open(store_db, STORE) as ledger:
        sync = StoreSync(SyncSettings(), LedgerStorePort(ledger))
        with pytest.raises(SnapshotError, match="central URL"):
            await sync.resync_now()
