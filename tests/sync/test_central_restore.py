"""Central restored from a backup while a store was stopped (PROTOCOL §4.3, last
sentence): the store comes back idle, sees only the higher retained ack, and sends
nothing; the reference central, seeing the live birth's ``last_seq`` above what it
applied, acks that epoch again at once, so the store goes back and central gets every
event without waiting for the store's next fact.

Real parts: mosquitto, ``edge-central serve`` as a process (SQLite), StoreSync over a real
ledger file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import STORE
from tests.helpers.processes import CentralProcess
from tests.helpers.running_store import running_store, settings_for
from tests.sync.test_store_central import acked_all, until, watching


@pytest.fixture
def central(tmp_path: Path, broker: Broker) -> Iterator[CentralProcess]:
    process = CentralProcess(tmp_path / "central", broker.url, [STORE], resend_after=1.0)
    process.start()
    try:
        yield process
    finally:
        process.terminate()


def applied(central: CentralProcess, epoch: str) -> int:
    rows = central.query("SELECT applied_seq FROM epochs WHERE store = ? AND epoch = ?",
                         (STORE, epoch))
    return int(rows[0][0]) if rows else 0


def copy_db(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
        if Path(f"{src}{suffix}").exists():
            shutil.copy2(f"{src}{suffix}", f"{dst}{suffix}")


@pytest.mark.slow
async def test_idle_store_resends_after_a_central_restore(
    broker: Broker, central: CentralProcess, store_db: Path, tmp_path: Path,
) -> None:
    settings = settings_for(broker.url, None, central_url=central.url,
                            central_token=central.token_for(STORE).read_text())
    backup = tmp_path / "central-backup.db"
    async with running_store(store_db, settings) as store:
        progress = watching(store, central)
        await until(store.port.has_resynced, 30, progress=progress)
        await store.record(100)
        await until(lambda: acked_all(store), 30, progress=progress)
        epoch = (await store.port.epochs())[-1].epoch
        central.terminate()  # a clean stop: the copy is consistent
        copy_db(central.db, backup)
        central.start()
        await store.record(150, start=100)
        await until(lambda: acked_all(store), 30, progress=progress)
        last = await store.last_seq()
    assert applied(central, epoch) == last == 250

    # central restored from the backup while the store is stopped
    central.terminate()
    copy_db(backup, central.db)
    central.start()
    assert applied(central, epoch) == 100

    async with running_store(store_db, settings) as store:

        async def caught_up() -> bool:
            return applied(central, epoch) == await store.last_seq() >= last

        # the store records no fact: only central's live ack can make it go back (it
        # then records one alert, about central's regressed ack)
        await until(caught_up, 30, progress=watching(store, central))
