"""Fixtures for the RFID tests: a real ledger file with a catalog of tagged items (20
GTINs), a config with inventory readers in two zones and a door reader, the engine with a
settable clock, and the retail service that sells by EPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.epc import decode_sgtin96, encode_sgtin96, gs1_check_digit
from drivers.events import TagEvent
from edge_agent.api.app import create_app
from edge_agent.api.server import serve_api
from edge_agent.config import Config
from edge_agent.config_load import parse_config
from edge_agent.ledger import Ledger, Tx
from edge_agent.retail import RetailService
from edge_agent.retail.requests import ReceiptRequest, ReturnRequest, SaleRequest
from edge_agent.rfid.engine import RfidEngine
from edge_agent.services import AgentServices

COMPANY = "4012345"  # 7-digit GS1 company prefix
T0 = 1795600800.0  # 2026-11-25 10:00:00 UTC


def gtin_of(n: int) -> str:
    body = "0" + COMPANY + f"{n:05d}"
    return body + str(gs1_check_digit(body))


GTINS = [gtin_of(n) for n in range(20)]
SKUS = [f"RF-{n:02d}" for n in range(20)]
SKU_OF = dict(zip(GTINS, SKUS, strict=True))
FOREIGN_GTIN = gtin_of(999)  # a tagged item this store does not sell


def epc_hex(gtin: str, serial: int) -> str:
    return encode_sgtin96(gtin, serial, len(COMPANY)).hex().upper()


def seed_catalog(tx: Tx) -> None:
    for sku, gtin in zip(SKUS, GTINS, strict=True):
        tx.execute("INSERT INTO catalog (sku, name, price, currency, uom, active, extra) "
                   "VALUES (?, ?, '19.90', 'EUR', 'unit', 1, '{}')", (sku, f"Shirt {sku}"))
        tx.execute("INSERT INTO catalog_gtins (gtin, sku) VALUES (?, ?)", (gtin, sku))


def uhf(name: str, role: str, zone: str, port: str = "/dev/null",
        **extra: Any) -> dict[str, Any]:
    return {"kind": "uhf", "name": name, "port": port, "role": role, "zone": zone, **extra}


def make_config(tmp_path: Path, devices: list[dict[str, Any]] | None = None,
                **rfid: Any) -> Config:
    raw: dict[str, Any] = {
        "store": {"id": "S001", "currency": "EUR"},
        "database": {"path": str(tmp_path / "ledger.db")},
        "api": {"socket": str(tmp_path / "api.sock")},
        "devices": devices if devices is not None else [
            uhf("floor-1", "inventory", "floor"), uhf("back-1", "inventory", "backroom"),
            uhf("door-uhf", "door", "entrance")],
        "rfid": rfid,
    }
    return parse_config(raw, tmp_path / "config.toml")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    services: AgentServices
    ledger: Ledger
    engine: RfidEngine
    retail: RetailService
    clock: Clock

    def device(self, name: str) -> Any:
        return next(d for d in self.services.config.devices if d.name == name)

    def tag(self, device: str, epc: str, *, present: bool = True) -> None:
        gtin, serial = _decode(epc)
        self.engine.handle(self.device(device), TagEvent(
            device=device, tag_id=epc, technology="uhf", present=present, rssi=-50,
            epc_gtin=gtin, epc_serial=serial, ts=self.clock.now))

    async def receive(self, lines: dict[str, int]) -> None:
        await self.retail.receipt(ReceiptRequest.model_validate(
            {"lines": [{"sku": s, "qty": q} for s, q in lines.items()]}), idempotency_key=None)

    async def sell(self, *epcs: str, customer: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"terminal": "T1", "lines": [{"epc": e} for e in epcs],
                                "payments": [{"method": "cash", "amount": "99999"}]}
        if customer is not None:
            body["customer"] = customer
        result = await self.retail.sale(SaleRequest.model_validate(body), idempotency_key=None)
        return result.body

    async def give_back(self, epc: str, sku: str) -> dict[str, Any]:
        result = await self.retail.return_goods(ReturnRequest.model_validate(
            {"lines": [{"sku": sku, "qty": 1, "epc": epc, "unit_price": "19.90"}]}),
            idempotency_key=None)
        return result.body

    def on_hand(self) -> dict[str, int]:
        return self.ledger.read_blocking(lambda conn: {
            str(r[0]): int(r[1]) for r in conn.execute("SELECT sku, on_hand FROM stock")})

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.ledger.read_blocking(lambda conn: [
            json.loads(bytes(r[0])) for r in conn.execute("SELECT payload FROM events "
                                                          "ORDER BY id")])
        return [e for e in rows if kind is None or e["type"] == kind]


def _decode(epc: str) -> tuple[str | None, str | None]:
    sg = decode_sgtin96(bytes.fromhex(epc))
    return (sg.gtin, sg.serial) if sg else (None, None)


@pytest.fixture
async def make_rig(short_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await make_rig(devices=None, **rfid)`` -> a started :class:`Rig`."""
    tmp_path = short_dir
    ledgers: list[Ledger] = []

    async def factory(devices: list[dict[str, Any]] | None = None, **rfid: Any) -> Rig:
        home = tmp_path / f"store{len(ledgers)}"
        home.mkdir()
        config = make_config(home, devices, **rfid)
        ledger = Ledger.open(config.database.path, config.store.id)
        ledgers.append(ledger)
        if ledger.is_new:
            ledger.write_blocking(seed_catalog)
        services = AgentServices(config=config, ledger=ledger)
        clock = Clock(time.time())  # the retail service stamps sales with the real time
        retail = RetailService(ledger, config.store, hub=services.hub)
        engine = RfidEngine(services, retail=retail, clock=clock)
        await engine.start()
        return Rig(services, ledger, engine, retail, clock)

    yield factory
    for ledger in ledgers:
        ledger.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ea-rfid-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    """The agent's real API app for ``rig`` on its Unix socket, and a client to it."""
    config = rig.services.config
    app = create_app(rig.services, retail=rig.retail)
    ready = asyncio.Event()
    task = asyncio.create_task(serve_api(app, config.api, ready=ready), name="test.api")
    try:
        async with asyncio.timeout(30):
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                await task
            waiter.cancel()
        transport = httpx.AsyncHTTPTransport(uds=str(config.api.socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=30) as client:
            yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
