"""Scan-only terminals: real ptys (drivers simulator + reader) into ScanModes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from drivers.events import ScanEvent
from drivers.simulator import Simulator
from edge_agent.config import Config
from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger
from edge_agent.retail.scanmodes import ScanModes
from edge_agent.services import AgentServices
from tests.edge_agent.retail.seed import (
    SALE_BARCODE,
    config,
    device,
    event_payloads,
    open_ledger,
    scanner_pipeline,
    stock_table,
    until,
)


def services_for(ledger: Ledger, cfg: Config | None = None) -> AgentServices:
    return AgentServices(config=cfg or config(), ledger=ledger, hub=EventHub())


class Collector:
    def __init__(self, hub: EventHub) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._hub = hub
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        ready = asyncio.Event()

        async def pump() -> None:
            async with self._hub.subscribe() as queue:
                ready.set()
                try:
                    while True:
                        self.items.append(await queue.get())
                finally:  # what was published but not yet taken
                    while not queue.empty():
                        self.items.append(queue.get_nowait())

        self._task = asyncio.create_task(pump(), name="test.hub-collector")
        await ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [data for t, data in self.items if t == topic]


async def test_sale_basket_over_pty_checks_out_as_one_sale(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.db")
    services = services_for(ledger)
    modes = ScanModes(services)
    try:
        async with Simulator(tmp_path / "dev") as sim, Collector(services.hub) as seen:
            sim.add_scanner("till-1", suffix="CR")
            await sim.start()
            dev = device("till-1", "sale", port=sim.device_ports()["till-1"])
            async with scanner_pipeline(sim, dev, modes) as handled:
                script = [(SALE_BARCODE, "]E0"), ("CTL-QTY-3", None), ("CHOC", None),
                          ("4006381333931", None), ("CTL-VOID", None),
                          ("0000000000000", None), ("CTL-CHECKOUT", None)]
                for code, aim in script:
                    sim.scan("till-1", code, aim=aim)
                await until(lambda: len(handled) == len(script))
        events = event_payloads(ledger)
        assert [e["type"] for e in events] == ["sale", "alert"]
        data = events[0]["data"]
        assert [(x["sku"], x["qty"]) for x in data["lines"]] == [("A-100", 1), ("C-300", 3)]
        assert data["total"] == "3.55"
        assert data["payments"] == [{"method": "cash", "amount": "3.55"}]
        assert data["terminal"] == "T1"
        assert [r["reason"] for r in seen.of("scan_rejected")] == ["unknown_sku"]
        assert services.counters["scan_rejected"] == 1
        actions = [b["action"] for b in seen.of("basket")]
        assert actions == ["add", "quantity", "add", "add", "void", "checkout"]
        assert seen.of("scan")[0]["code"] == SALE_BARCODE
        assert await modes.retail.basket("T1") is None
    finally:
        ledger.close()


async def test_basket_survives_restart(tmp_path: Path) -> None:
    dev = device("till-1", "sale")
    ledger = open_ledger(tmp_path / "l.db")
    modes = ScanModes(services_for(ledger))
    await modes.handle_scan(dev, ScanEvent(device="till-1", code=SALE_BARCODE))
    await modes.handle_scan(dev, ScanEvent(device="till-1", code="CTL-QTY-2"))
    ledger.close()

    ledger = open_ledger(tmp_path / "l.db")
    try:
        modes = ScanModes(services_for(ledger))
        basket = await modes.retail.basket("T1")
        assert basket is not None
        assert basket["pending_qty"] == 2
        assert [(x["sku"], x["qty"]) for x in basket["lines"]] == [("A-100", 1)]
        await modes.handle_scan(dev, ScanEvent(device="till-1", code="CHOC"))
        await modes.handle_scan(dev, ScanEvent(device="till-1", code="CTL-CHECKOUT"))
        sales = [e for e in event_payloads(ledger) if e["type"] == "sale"]
        assert len(sales) == 1
        assert [(x["sku"], x["qty"]) for x in sales[0]["data"]["lines"]] == [
            ("A-100", 1), ("C-300", 2)]
        # a second checkout scan finds nothing to sell and writes nothing
        await modes.handle_scan(dev, ScanEvent(device="till-1", code="CTL-CHECKOUT"))
        assert len([e for e in event_payloads(ledger) if e["type"] == "sale"]) == 1
        assert modes.services.counters["scan_rejected.basket_empty"] == 1
    finally:
        ledger.close()


async def test_receiving_session_survives_restart(tmp_path: Path) -> None:
    dev = device("dock-1", "receive", terminal="dock")
    ledger = open_ledger(tmp_path / "l.db")
    modes = ScanModes(services_for(ledger))
    for code in (SALE_BARCODE, SALE_BARCODE, "CHOC"):
        await modes.handle_scan(dev, ScanEvent(device="dock-1", code=code))
    assert event_payloads(ledger) == []  # session lines are not facts
    ledger.close()

    ledger = open_ledger(tmp_path / "l.db")
    try:
        modes = ScanModes(services_for(ledger))
        await modes.handle_scan(dev, ScanEvent(device="dock-1", code="CTL-QTY-5"))
        await modes.handle_scan(dev, ScanEvent(device="dock-1", code="CHOC"))
        await modes.handle_scan(dev, ScanEvent(device="dock-1", code="CTL-CLOSE"))
        events = event_payloads(ledger)
        assert [e["type"] for e in events] == ["receipt"]
        assert events[0]["stock"] == [{"sku": "A-100", "delta": 2}, {"sku": "C-300", "delta": 6}]
        assert stock_table(ledger) == {"A-100": (2, 0), "C-300": (6, 0)}
        assert await modes.retail.sessions() == []
    finally:
        ledger.close()


async def test_count_mode_and_lookup_mode(ledger: Ledger) -> None:
    services = services_for(ledger)
    modes = ScanModes(services)
    await modes.retail.session_open("receive", "dock")
    await modes.retail.session_add("receive", "dock", sku="A-100", qty=10)
    sid = await modes.retail.open_session_id("receive", "dock")
    assert sid is not None
    await modes.retail.session_close(sid)
    counter = device("count-1", "count", terminal="floor")
    async with Collector(services.hub) as seen:
        for code in (SALE_BARCODE,) * 4 + ("CTL-CLOSE",):
            await modes.handle_scan(counter, ScanEvent(device="count-1", code=code))
        looker = device("look-1", "lookup", terminal="kiosk")
        before = len(event_payloads(ledger))
        await modes.handle_scan(looker, ScanEvent(device="look-1", code=SALE_BARCODE))
        assert len(event_payloads(ledger)) == before
    count = event_payloads(ledger)[-1]
    assert count["type"] == "count"
    assert count["data"]["lines"] == [{"sku": "A-100", "counted": 4, "expected": 10}]
    assert count["stock"] == [{"sku": "A-100", "delta": -6}]
    lookup = seen.of("lookup")
    assert (lookup[0]["sku"], lookup[0]["on_hand"], lookup[0]["price"]) == ("A-100", 4, "2.50")


@pytest.mark.parametrize(("code", "reason"), [
    ("", "invalid_code"),
    ("x" * 600, "invalid_code"),
    ("AB\x07C", "invalid_code"),
    ("4111111111111111", "card_data_rejected"),
    ("CTL-QTY-0", "invalid_quantity"),
    ("CTL-QTY-abc", "invalid_quantity"),
    ("CTL-VOID", "basket_empty"),
    ("CTL-CANCEL", "basket_empty"),
    ("CTL-CLOSE", "not_in_session"),
    ("NO-SUCH-THING", "unknown_sku"),
])
async def test_bad_scans_are_published_and_counted_never_raised(
    ledger: Ledger, code: str, reason: str
) -> None:
    services = services_for(ledger)
    modes = ScanModes(services)
    async with Collector(services.hub) as seen:
        await modes.handle_scan(device("till-1", "sale"), ScanEvent(device="till-1", code=code))
    rejected = seen.of("scan_rejected")
    assert [r["reason"] for r in rejected] == [reason]
    assert services.counters[f"scan_rejected.{reason}"] == 1
    assert "4111111111111111" not in repr(seen.items)
    assert event_payloads(ledger) == []


async def test_closed_ledger_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.db")
    services = services_for(ledger)
    modes = ScanModes(services)
    ledger.close()
    async with Collector(services.hub) as seen:
        await modes.handle_scan(device("till-1", "sale"),
                                ScanEvent(device="till-1", code="CHOC"))
        # a valid EAN is never card data, known product or not (issue 13)
        await modes.handle_scan(device("till-1", "sale"),
                                ScanEvent(device="till-1", code=SALE_BARCODE))
    assert [r["reason"] for r in seen.of("scan_rejected")] == [
        "ledger_unavailable", "ledger_unavailable"]
