"""A running ``StoreSync`` over a real SQLite ledger, for the store-side sync tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.ledger import Ledger, Tx
from edge_agent.sync_adapter import LedgerStorePort
from sync.store import StoreSync
from sync.store_settings import SyncSettings
from tests.helpers.peer_central import STORE, TOKEN, PeerCentral


def settings_for(url: str, peer: PeerCentral | None, **kw: Any) -> SyncSettings:
    values: dict[str, Any] = {
        "broker_url": url, "resend_after": 1.0, "backoff_base": 0.05, "backoff_max": 0.5,
        "digest_interval": 3600, "health_interval": 3600, "batch_max_events": 200,
        "window_events": 1000,
    }
    if peer is not None:
        values["central_url"] = f"http://127.0.0.1:{peer.http_port}"
        values["central_token"] = TOKEN
    values.update(kw)
    return SyncSettings(**values)


@dataclass
class RunningStore:
    ledger: Ledger
    port: LedgerStorePort
    sync: StoreSync
    task: asyncio.Task[None]

    async def record(self, n: int, *, sku_count: int = 5, start: int = 0) -> None:
        def op(tx: Tx) -> None:
            for i in range(start, start + n):
                sku = f"SKU-{i % sku_count}"
                tx.append("sale", {"sale_id": f"s{i}", "total": "1.00", "currency": "EUR"},
                          stock=[(sku, -1)])

        await self.ledger.write(op)

    async def last_seq(self) -> int:
        return (await self.port.epochs())[-1].last_seq

    async def stock(self) -> dict[str, tuple[int, int]]:
        def read(conn: Any) -> dict[str, tuple[int, int]]:
            return {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT sku, on_hand, reserved FROM stock") if r[1] or r[2]}

        return await self.ledger.read(read)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def running_store(db: Path, settings: SyncSettings, *, start: bool = True,
                        store: str = STORE) -> AsyncIterator[RunningStore]:
    ledger = Ledger.open(db, store)
    port = LedgerStorePort(ledger)
    sync = StoreSync(settings, port)
    task = asyncio.create_task(sync.run(), name="test.store-sync")
    running = RunningStore(ledger, port, sync, task)
    try:
        yield running
    finally:
        await running.stop()
        ledger.close()
