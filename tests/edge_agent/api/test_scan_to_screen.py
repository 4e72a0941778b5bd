"""End to end without POS software: a scanner on a pty (drivers simulator + reader), the
scan modes, the hub and the API's event stream a POS screen reads, over the real socket."""

from __future__ import annotations

from pathlib import Path

from drivers.simulator import Simulator
from edge_agent.retail.scanmodes import ScanModes
from tests.edge_agent.api.conftest import Api
from tests.edge_agent.api.test_api import read_sse
from tests.edge_agent.retail.seed import (
    SALE_BARCODE,
    device,
    event_payloads,
    scanner_pipeline,
    until,
)


async def test_scans_on_a_pty_reach_the_screen_and_check_out(api: Api, short_dir: Path) -> None:
    modes = ScanModes(api.services)
    async with Simulator(short_dir / "dev") as sim:
        sim.add_scanner("till-1", suffix="CRLF")
        await sim.start()
        dev = device("till-1", "sale", terminal="T7", port=sim.device_ports()["till-1"])
        async with scanner_pipeline(sim, dev, modes), api.client.stream(
            "GET", "/v1/events/stream", params={"topics": "scan,basket,scan_rejected"}
        ) as stream:
            await until(lambda: api.services.hub.subscriber_count == 1)
            sim.scan("till-1", SALE_BARCODE, aim="]E0")
            sim.scan("till-1", "NOT-A-PRODUCT")
            sim.scan("till-1", "CHOC")
            sim.scan("till-1", "CTL-CHECKOUT")
            events = await read_sse(stream, 8)
    topics = [topic for topic, _ in events]
    assert topics == ["scan", "basket", "scan", "scan_rejected", "scan", "basket", "scan",
                      "basket"]
    assert events[0][1]["code"] == SALE_BARCODE
    assert events[0][1]["symbology"] == "]E0"
    assert events[3][1]["reason"] == "unknown_sku"
    checkout = events[7][1]
    assert (checkout["action"], checkout["total"]) == ("checkout", "2.85")
    sale = (await api.client.get(f"/v1/sales/{checkout['sale_id']}")).json()
    assert (sale["terminal"], [x["sku"] for x in sale["lines"]]) == ("T7", ["A-100", "C-300"])
    assert [e["type"] for e in event_payloads(api.ledger)].count("sale") == 1
