"""A scanner in pick mode: real pty (drivers simulator + reader) into ScanModes, picking
online orders with the order slip and item scans alone."""

from __future__ import annotations

from pathlib import Path

from drivers.events import ScanEvent
from drivers.simulator import Simulator
from edge_agent.hub import EventHub
from edge_agent.orders.service import OrderService
from edge_agent.retail.scanmodes import ScanModes
from edge_agent.services import AgentServices
from tests.edge_agent.orders.helpers import assign, stock_in
from tests.edge_agent.retail.seed import (
    SALE_BARCODE,
    STORE,
    config,
    device,
    event_payloads,
    open_ledger,
    scanner_pipeline,
    until,
)
from tests.edge_agent.retail.test_scanmodes import Collector

B_SCAN = "4006381333931"  # B-200


async def test_pick_mode_over_pty(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.db")
    services = AgentServices(config=config(), ledger=ledger, hub=EventHub())
    modes = ScanModes(services)
    orders = OrderService(ledger, STORE)
    try:
        stock_in(ledger, {"A-100": 5, "B-200": 5})
        assign(ledger, "W1", {"A-100": 3, "B-200": 1})
        assign(ledger, "W2", {"B-200": 1})
        async with Simulator(tmp_path / "dev") as sim, Collector(services.hub) as seen:
            sim.add_scanner("pick-1", suffix="CR")
            await sim.start()
            dev = device("pick-1", "pick", terminal="P1", port=sim.device_ports()["pick-1"])
            async with scanner_pipeline(sim, dev, modes) as handled:
                script = [SALE_BARCODE,  # no order being picked yet: refused
                          "ORD:W1",  # the slip: W1 accepted by P1 and current
                          SALE_BARCODE, "CTL-QTY-2", SALE_BARCODE,
                          SALE_BARCODE,  # a fourth unit: too many
                          "0000000000000",  # unknown
                          B_SCAN, "CTL-CLOSE",  # all picked, then ready
                          "ORD:nope", "ORD:W1"]  # unknown order; W1 is ready already
                for code in script:
                    sim.scan("pick-1", code)
                await until(lambda: len(handled) == len(script))
        w1 = await orders.order("W1")
        assert w1["status"] == "ready"
        assert [x["picked"] for x in w1["lines"]] == [3, 1]
        assert w1["history"][1]["status"] == "accepted"
        types = [e["type"] for e in event_payloads(ledger)]
        assert types[-3:] == ["order.accepted", "order.picked", "order.ready"]
        accepted = next(e for e in event_payloads(ledger) if e["type"] == "order.accepted")
        assert accepted["data"]["by"] == "P1"
        assert [r["reason"] for r in seen.of("scan_rejected")] == [
            "pick_no_order", "pick_exceeds_order", "unknown_sku", "order_not_found",
            "order_wrong_state"]
        assert [(o["action"], o["status"]) for o in seen.of("order")] == [
            ("accept", "accepted"), ("pick", "picking"), ("pick", "picking"),
            ("pick", "picked"), ("ready", "ready")]
        assert (await orders.order("W2"))["status"] == "incoming"
        # With one order being picked, a scan without its slip goes to it.
        fresh = ScanModes(services)
        await orders.accept("W2", idempotency_key=None)
        await fresh.handle_scan(dev, ScanEvent(device="pick-1", code=B_SCAN))
        assert (await orders.order("W2"))["status"] == "picked"
    finally:
        ledger.close()
