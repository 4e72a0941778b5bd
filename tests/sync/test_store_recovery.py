"""The agent's own side of two recovery paths (PROTOCOL §4.1, §4.3), real mosquitto,
real ledger files, the controllable test central:

- a broker outage in the middle of a stall (central not acknowledging): after the
  reconnection the store resends what is unacknowledged at once, and a batch lost right
  after it is repaired by a go-back on the non-advancing live ack, all long before the
  ``resend_after`` timer (set to a minute here) could explain it;
- a ledger rolled back behind the agent's back (its files replaced by an older copy while
  it was stopped): central's ack beyond the store's last seq starts a new epoch and a
  resync, and no seq of the old epoch is ever sent again with other content.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers.faultproxy import FaultProxy
from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import running_peer
from tests.helpers.running_store import running_store, settings_for

RESEND_AFTER = 60.0
# far longer than a loaded machine needs to reconnect and resend, far shorter than the
# resend timer: meeting it proves the go-back, not the timer, delivered the events
WITHIN = 40.0


def copy_ledger(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
        if Path(f"{src}{suffix}").exists():
            shutil.copy2(f"{src}{suffix}", f"{dst}{suffix}")


async def test_go_back_after_a_broker_outage_mid_stall(broker: Broker, store_db: Path) -> None:
    with FaultProxy(broker.port) as proxy:
        async with running_peer(broker, ack_live_births=True) as peer:
            settings = settings_for(proxy.url, peer, resend_after=RESEND_AFTER)
            async with running_store(store_db, settings) as store:
                await store.record(50)
                epoch = store.port.current_epoch
                await peer.wait_for(lambda: peer.applied.get(epoch) == 50)
                peer.stalled = True  # central stops acknowledging
                await store.record(300, start=50)
                await peer.wait_for(lambda: peer.batches_received >= 3)  # sent, unacked
                gobacks, reconnects = (store.sync.counters.gobacks,
                                       store.sync.counters.reconnects)
                # the store's broker connection breaks and stays refused for a second
                proxy.refuse(1.0)
                proxy.reset()
                await store.record(100, start=350)  # recording never waits for the network
                peer.stalled = False
                # the first batch after the outage is lost too: a gap that central answers
                # with a live ack that does not advance
                peer.drop_event_batches.add(peer.batches_received + 1)
                await peer.wait_for(lambda: peer.applied.get(epoch) == 450, limit=WITHIN)
                assert [s for _, s, _ in peer.applied_events] == list(range(1, 451))
                assert peer.conflicts == 0
                assert store.sync.counters.reconnects > reconnects
                assert store.sync.counters.gobacks > gobacks


async def test_ledger_rolled_back_behind_the_agents_back(
    broker: Broker, store_db: Path, tmp_path: Path,
) -> None:
    copy = tmp_path / "old-copy" / "ledger.db"
    async with running_peer(broker) as peer:
        settings = settings_for(broker.url, peer)
        async with running_store(store_db, settings) as store:
            await store.record(20)
            epoch = store.port.current_epoch
            await peer.wait_for(lambda: peer.applied.get(epoch) == 20)
        copy_ledger(store_db, copy)  # e.g. a VM snapshot taken here
        async with running_store(store_db, settings) as store:
            await store.record(10, start=20)
            await peer.wait_for(lambda: peer.applied.get(epoch) == 30)
        hashes_before = dict(peer.hashes)
        served = peer.snapshots_served

        copy_ledger(copy, store_db)  # the disk is rolled back, nobody tells the agent
        async with running_store(store_db, settings) as store:
            assert store.port.current_epoch == epoch  # it cannot know yet
            # central's (retained) ack through 30 is beyond the store's last seq, 20
            await peer.wait_for(lambda: store.port.current_epoch != epoch)
            new_epoch = store.port.current_epoch
            await peer.wait_for(lambda: peer.snapshots_served > served)
            await store.record(15, start=1000)
            await peer.wait_for(lambda: peer.applied.get(new_epoch, 0) >= 16)  # alert + 15
            assert store.sync.counters.lost_histories == 1
            marks = {m.epoch: m for m in await store.port.epochs()}
            assert marks[epoch].last_seq == 20  # nothing new was ever numbered in it
        # no seq was reused: the old epoch still holds exactly what central applied, with
        # the same bytes, and the new facts are numbered from 1 in the new epoch
        assert peer.applied[epoch] == 30
        assert {k: v for k, v in peer.hashes.items() if k[0] == epoch} == {
            k: v for k, v in hashes_before.items() if k[0] == epoch}
        assert peer.conflicts == 0
        new_seqs = [s for e, s, _ in peer.applied_events if e == new_epoch]
        assert new_seqs == list(range(1, len(new_seqs) + 1))
