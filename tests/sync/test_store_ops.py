"""Operations a technician or an integrator relies on (issue 17): a reservation is
released at its ``expires_at``, not at the next poll or the next restart."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from edge_agent.maintenance import backup_database, restore_database
from sync.wire import format_ts, utc_now
from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import STORE, running_peer
from tests.helpers.running_store import running_store, settings_for


async def test_a_reservation_is_released_at_its_expires_at(broker: Broker,
                                                          store_db: Path) -> None:
    # The periodic check is an hour away: only a release scheduled for expires_at passes.
    async with running_peer(broker) as peer:
        settings = settings_for(broker.url, peer, reservation_check_interval=3600)
        async with running_store(store_db, settings) as store:
            await peer.wait_for(lambda: peer.snapshots_served == 1)
            await peer.send("stock.adjust", {"reason": "replenishment"}, stock=[("A-1", 10)])
            expires = format_ts(utc_now() + timedelta(seconds=2))
            await peer.send("reservation.create", {
                "reservation_id": "R-WEB", "order_ref": "WEB-1", "expires_at": expires,
                "lines": [{"sku": "A-1", "qty": 3}]}, reserve=[("A-1", 3)])
            await peer.wait_for(lambda: peer.store_cseq == 2)
            assert (await store.stock())["A-1"] == (10, 3)
            # released by the store's own clock and reported to central
            await peer.wait_for(lambda: "R-WEB" not in peer.reservations, limit=60)
            assert (await store.stock())["A-1"] == (10, 0)
            assert peer.stock["A-1"] == [10, 0]


async def test_a_planned_restore_is_not_lost_history(broker: Broker, store_db: Path,
                                                     tmp_path: Path) -> None:
    """After ``db restore`` the backup's epoch is behind central's ack: that is what the
    restore's own new epoch is for, not a lost history (no alert, no second epoch)."""
    backup = tmp_path / "backup.db"
    async with running_peer(broker) as peer:
        settings = settings_for(broker.url, peer)
        async with running_store(store_db, settings) as store:
            await store.record(5)
            epoch = store.port.current_epoch
            await peer.wait_for(lambda: peer.applied.get(epoch) == 5)
            backup_database(store_db, backup)
            await store.record(5, start=5)
            await peer.wait_for(lambda: peer.applied.get(epoch) == 10)
        restored = restore_database(backup, store_db, STORE)
        served = peer.snapshots_served
        async with running_store(store_db, settings) as store:
            assert store.port.current_epoch == restored.new_epoch
            await peer.wait_for(lambda: peer.snapshots_served > served)
            await store.record(1, start=10)
            await peer.wait_for(lambda: peer.applied.get(restored.new_epoch) == 1)
            await peer.ack(epoch, 10)  # the retained ack again, live
            await store.record(1, start=11)
            await peer.wait_for(lambda: peer.applied.get(restored.new_epoch) == 2)
            assert store.port.current_epoch == restored.new_epoch
            assert store.sync.counters.lost_histories == 0
            types = await store.ledger.read(lambda conn: [
                r[0] for r in conn.execute("SELECT type FROM events")])
            assert "alert" not in types, types
            assert len(await store.port.epochs()) == 2


async def test_a_broker_stall_is_reported_and_ends_without_a_traceback(
        broker: Broker, store_db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGSTOP the broker: its kernel still accepts connections, nothing answers. The
    store says it is not connected while stalled, and once the broker wakes up nothing
    of aiomqtt's callbacks raises (was: "Exception in callback … CancelledError")."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    assert broker.process is not None
    try:
        async with running_peer(broker) as peer:
            settings = settings_for(broker.url, peer, keepalive=5, connect_timeout=3)
            async with running_store(store_db, settings) as store:
                await peer.wait_for(lambda: store.sync.connected)
                await store.record(1)
                epoch = store.port.current_epoch
                await peer.wait_for(lambda: peer.applied.get(epoch) == 1)
                os.kill(broker.process.pid, signal.SIGSTOP)
                try:
                    await store.record(1, start=1)  # its publish waits for a PUBACK
                    await peer.wait_for(lambda: not store.sync.connected, limit=60)
                    # paho gives up (keepalive), a reconnect finds no CONNACK, and again
                    await peer.wait_for(
                        lambda: store.sync.counters.connect_failures >= 1, limit=90)
                finally:
                    os.kill(broker.process.pid, signal.SIGCONT)
                await peer.wait_for(lambda: peer.applied.get(epoch) == 2, limit=90)
                await peer.wait_for(lambda: store.sync.connected, limit=60)
                await store.record(1, start=2)
                await peer.wait_for(lambda: peer.applied.get(epoch) == 3, limit=60)
                await asyncio.sleep(1)  # late callbacks of the stalled connections
            gc.collect()  # "Future exception was never retrieved" is reported at collection
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert loop_errors == []
    assert not [r for r in caplog.records if "TaskGroup" in r.getMessage()]
