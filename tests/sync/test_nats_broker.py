"""The store and the reference central on a second broker (issue 21): NATS server's MQTT
support (MQTT 3.1.1; retained messages and wills kept in JetStream). With ``protocol =
"3.1.1"`` on both sides the protocol runs unchanged: the store resyncs, its sales are
acknowledged, central's stock equals the store's, and after a central SIGKILL the store's
later sales arrive too (nothing lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.nats import Nats, nats_unavailable, running_nats
from tests.helpers.peer_central import STORE
from tests.helpers.processes import CentralProcess
from tests.helpers.running_store import RunningStore, running_store, settings_for


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_nats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def central(tmp_path: Path, nats: Nats) -> Iterator[CentralProcess]:
    process = CentralProcess(tmp_path / "central", nats.url, [STORE], resend_after=1.0)
    text = process.config.read_text()
    process.config.write_text(text.replace('client_id = "central-chaos"\n',
                                           'client_id = "central-chaos"\nprotocol = "3.1.1"\n'))
    process.start()
    try:
        yield process
    finally:
        process.terminate()


async def _stock(central: CentralProcess) -> dict[str, tuple[int, int]]:
    body = await asyncio.to_thread(central.api, "GET", f"/v1/stores/{STORE}/stock")
    return {r["sku"]: (r["on_hand"], r["reserved"]) for r in body["stock"]
            if r["on_hand"] or r["reserved"]}


async def _until(predicate: Any, limit: float = 60.0) -> None:
    async with asyncio.timeout(limit):
        while not await predicate():  # noqa: ASYNC110 - polling a remote state
            await asyncio.sleep(0.05)


async def _acked_all(store: RunningStore) -> bool:
    marks = await store.port.epochs()
    return all(m.acked_seq >= m.last_seq for m in marks)


@pytest.mark.slow
async def test_store_and_central_on_nats_mqtt(nats: Nats, central: CentralProcess,
                                              store_db: Path) -> None:
    settings = settings_for(nats.url, None, central_url=central.url,
                            central_token=central.token_for(STORE).read_text(),
                            mqtt_protocol="3.1.1")
    async with running_store(store_db, settings) as store:
        await _until(store.port.has_resynced)
        await store.record(400, sku_count=7)
        await _until(lambda: _acked_all(store))

        async def same_stock() -> bool:
            return await _stock(central) == await store.stock()

        await _until(same_stock)
        await asyncio.to_thread(central.kill)
        await store.record(200, sku_count=7, start=400)
        await asyncio.to_thread(central.start)
        await _until(lambda: _acked_all(store))
        await _until(same_stock)
        status = await asyncio.to_thread(central.api, "GET", f"/v1/stores/{STORE}")
        assert status["state"] == "online"  # the retained birth, replayed by NATS
