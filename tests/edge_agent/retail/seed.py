"""Catalog seed rows for retail and API tests (central's catalog.upsert does this in
production)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drivers import open_reader
from drivers.carddata import make_filter
from drivers.events import DeviceEvent, ScanEvent
from drivers.simulator import Simulator
from edge_agent.config import Config, SerialScannerDevice, StoreSection
from edge_agent.ledger import Ledger, Tx
from edge_agent.retail.catalog import read_known_gtins
from edge_agent.retail.scanmodes import ScanModes

STORE = StoreSection(id="S001", currency="EUR", rcn_region="sweden")

# sku, name, price, uom, gtins
CATALOG = [
    ("A-100", "Apple juice 1l", "2.50", "unit", ["05901234123457"]),
    ("B-200", "Rye bread", "1.99", "unit", ["04006381333931"]),
    ("C-300", "Chocolate", "0.35", "unit", []),
    ("W-300", "Cheese by weight", "0.0125", "g", ["02302120000006"]),
    ("P-400", "Deli tray (priced)", "9.99", "unit", ["02002010000009"]),
    ("USD-1", "Imported thing", "3.00", "unit", []),
]

SALE_BARCODE = "5901234123457"
WEIGHT_BARCODE = "2302120012344"  # W-300, 1234 g
PRICE_BARCODE = "2002010012347"  # P-400, 12.34


def seed_catalog(tx: Tx) -> None:
    for sku, name, price, uom, gtins in CATALOG:
        currency = "USD" if sku.startswith("USD") else "EUR"
        tx.execute(
            "INSERT INTO catalog (sku, name, price, currency, uom, active, extra) "
            "VALUES (?, ?, ?, ?, ?, 1, '{}')",
            (sku, name, price, currency, uom),
        )
        for gtin in gtins:
            tx.execute("INSERT INTO catalog_gtins (gtin, sku) VALUES (?, ?)", (gtin, sku))
    tx.execute("INSERT INTO catalog_aliases (alias, sku) VALUES ('CHOC', 'C-300')")


def add_reservation(ledger: Ledger, reservation_id: str, lines: dict[str, int]) -> None:
    """What central's reservation.create does: the row plus reserve deltas (no event)."""
    def op(tx: Tx) -> None:
        rows = [{"sku": s, "qty": q} for s, q in lines.items()]
        tx.execute(
            "INSERT INTO reservations (reservation_id, order_ref, lines, remaining, status, "
            "cancel_requested, created_cseq) VALUES (?, ?, ?, ?, 'open', 0, 1)",
            (reservation_id, f"ORD-{reservation_id}", json.dumps(rows), json.dumps(rows)),
        )
        tx.apply_deltas(reserve=list(lines.items()))

    ledger.write_blocking(op)


def add_count_request(ledger: Ledger, count_id: str, skus: list[str]) -> None:
    ledger.write_blocking(lambda tx: tx.execute(
        "INSERT INTO count_requests (count_id, skus, requested_at, status) "
        "VALUES (?, ?, '2026-11-25T09:00:00.000Z', 'open')", (count_id, json.dumps(skus))))


def open_ledger(path: Path, *, seed: bool = True) -> Ledger:
    ledger = Ledger.open(path, STORE.id)
    if seed and ledger.is_new:
        ledger.write_blocking(seed_catalog)
    return ledger


@contextmanager
def seeded_ledger(path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(path)
    try:
        yield ledger
    finally:
        ledger.close()


def config(**sections: object) -> Config:
    return Config.model_validate({"store": STORE.model_dump(), **sections})


def event_payloads(ledger: Ledger) -> list[dict[str, Any]]:
    """Every event in seq order, parsed."""
    return ledger.read_blocking(lambda conn: [
        json.loads(bytes(r[0])) for r in conn.execute("SELECT payload FROM events ORDER BY id")
    ])


def stock_from_events(ledger: Ledger) -> dict[str, int]:
    total: dict[str, int] = {}
    for event in event_payloads(ledger):
        for d in event.get("stock", []):
            total[d["sku"]] = total.get(d["sku"], 0) + d["delta"]
    return {k: v for k, v in total.items() if v}


def stock_table(ledger: Ledger) -> dict[str, tuple[int, int]]:
    return ledger.read_blocking(lambda conn: {
        r[0]: (int(r[1]), int(r[2]))
        for r in conn.execute("SELECT sku, on_hand, reserved FROM stock")
    })


async def until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other tasks
            await asyncio.sleep(0.01)


def device(name: str, mode: str, terminal: str = "T1",
           port: str = "/dev/null") -> SerialScannerDevice:
    return SerialScannerDevice.model_validate(
        {"name": name, "port": port, "mode": mode, "terminal": terminal})


@contextlib.asynccontextmanager
async def scanner_pipeline(sim: Simulator, dev: SerialScannerDevice,
                           modes: ScanModes) -> AsyncIterator[list[ScanEvent]]:
    """pty -> drivers reader -> ScanModes.handle_scan, as the daemon's router does."""
    queue: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    handled: list[ScanEvent] = []
    gtins = await modes.services.ledger.read(read_known_gtins)
    # 5901234123457 passes a 13-digit Maestro's Luhn and prefix checks: without the catalog
    # the reader would drop it as card data.
    reader = open_reader(dev, queue.put_nowait, card_filter=make_filter(gtins.__contains__))

    async def route() -> None:
        while True:
            event = await queue.get()
            if isinstance(event, ScanEvent):
                await modes.handle_scan(dev, event)
                handled.append(event)

    tasks = [asyncio.create_task(reader.run(), name=f"driver[{dev.name}].read"),
             asyncio.create_task(route(), name=f"router[{dev.name}]")]
    try:
        await until(lambda: reader.status.state == "connected")
        yield handled
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
