"""The store (StoreSync over a real ledger) against the reference central ``edge-central``
as a process, through a real mosquitto: sales, commands, digest, a central SIGKILL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import STORE
from tests.helpers.processes import CentralProcess
from tests.helpers.progress import until_progress
from tests.helpers.running_store import RunningStore, running_store, settings_for


@pytest.fixture
def central(tmp_path: Path, broker: Broker) -> Iterator[CentralProcess]:
    process = CentralProcess(tmp_path / "central", broker.url, [STORE], resend_after=1.0)
    process.start()
    try:
        yield process
    finally:
        process.terminate()


async def api(central: CentralProcess, method: str, path: str, **kw: Any) -> Any:
    return await asyncio.to_thread(central.api, method, path, **kw)


async def central_stock(central: CentralProcess) -> dict[str, tuple[int, int]]:
    body = await api(central, "GET", f"/v1/stores/{STORE}/stock")
    return {r["sku"]: (r["on_hand"], r["reserved"]) for r in body["stock"]
            if r["on_hand"] or r["reserved"]}


async def until(predicate: Any, limit: float = 20.0, *,
                progress: Callable[[], Awaitable[Hashable]] | None = None) -> None:
    """Wait until ``predicate()``; with ``progress``, fail only when it stood still for
    ``limit`` seconds (however long the whole wait takes), else after ``limit`` in all."""
    if progress is None:
        async with asyncio.timeout(limit):
            while not await predicate():  # noqa: ASYNC110 - polling a remote state
                await asyncio.sleep(0.05)
        return
    await until_progress(predicate, progress, limit, "the store and central to converge")


def watching(store: RunningStore, central: CentralProcess
             ) -> Callable[[], Awaitable[Hashable]]:
    """Progress of a store and the reference central: watermarks on both sides."""
    async def progress() -> Hashable:
        marks = tuple((m.epoch, m.acked_seq, m.last_seq) for m in await store.port.epochs())
        try:
            applied = tuple(await asyncio.to_thread(
                central.query, "SELECT epoch, applied_seq FROM epochs"))
            commands = tuple(await asyncio.to_thread(
                central.query, "SELECT issued_cseq, acked_cseq FROM stores"))
        except sqlite3.Error:
            applied = commands = ()  # central is restarting
        return marks, await store.port.applied_cseq(), applied, commands

    return progress


async def acked_all(store: RunningStore) -> bool:
    marks = await store.port.epochs()
    return all(m.acked_seq >= m.last_seq for m in marks)


@pytest.mark.slow
async def test_store_with_reference_central(
    broker: Broker, central: CentralProcess, store_db: Path,
) -> None:
    settings = settings_for(broker.url, None, central_url=central.url,
                            central_token=central.token_for(STORE).read_text())
    async with running_store(store_db, settings) as store:
        progress = watching(store, central)
        await until(store.port.has_resynced, progress=progress)
        await store.record(1500, sku_count=9)
        await until(lambda: acked_all(store), progress=progress)

        await api(central, "POST", f"/v1/stores/{STORE}/adjust",
                  json={"lines": [{"sku": "SKU-1", "delta": 40}]})
        res = await api(central, "POST", f"/v1/stores/{STORE}/reservations",
                        json={"order_ref": "O-1", "lines": [{"sku": "SKU-2", "qty": 3}]})
        await api(central, "DELETE", f"/v1/stores/{STORE}/reservations/{res['reservation_id']}")

        async def three_commands() -> bool:
            return await store.port.applied_cseq() >= 3

        await until(three_commands, progress=progress)
        # incl. the reservation.released event
        await until(lambda: acked_all(store), progress=progress)

        async def same_stock() -> bool:
            return await central_stock(central) == await store.stock()

        await until(same_stock, progress=progress)

        # the central dies (SIGKILL) while the store keeps recording; nothing is lost
        await asyncio.to_thread(central.kill)
        await store.record(700, sku_count=9, start=1500)
        await asyncio.to_thread(central.start)
        await until(lambda: acked_all(store), progress=progress)
        await until(same_stock, progress=progress)

        # digest: central compares and raises no stock_mismatch
        store.sync.request_digest()
        await asyncio.sleep(1.0)
        alerts = await api(central, "GET", "/v1/alerts", params={"kind": "stock_mismatch"})
        assert alerts["alerts"] == []
        everything = await api(central, "GET", "/v1/alerts", params={"store": STORE})
        # After its restart central re-reads our RETAINED birth (last_seq of when we
        # connected); that replay must not pass for a rollback, nor anything else alert.
        assert everything["alerts"] == []
        status = await api(central, "GET", "/v1/status")
        assert status["counters"]["events_quarantined"] == 0
        assert status["counters"]["drops"] == 0
        assert store.sync.counters.digests_published >= 1

        # a resync on demand rebuilds the same state
        before = await store.stock()
        await store.sync.resync_now("technician")
        assert await store.stock() == before
