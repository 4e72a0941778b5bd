"""The card-data guard on every surface (issue 13): a scanner with no mode on a real pty,
the event stream (hub), ``devices tail``, the log lines; and never on a valid GTIN."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from drivers import open_reader
from drivers.events import DeviceEvent, RejectedInput, ScanEvent
from drivers.simulator import Simulator
from edge_agent.cli.cmd_devices import mask
from edge_agent.config import SerialScannerDevice
from edge_agent.hub import EventHub
from edge_agent.logs import configure_logging
from tests.edge_agent.retail.seed import until

PAN = "4111111111111111"


async def test_a_scanner_with_no_mode_drops_card_data_and_keeps_every_gtin(
        tmp_path: Path) -> None:
    async with Simulator(tmp_path / "dev") as sim:
        sim.add_scanner("wedge", suffix="CR")
        await sim.start()
        dev = SerialScannerDevice.model_validate(
            {"name": "wedge", "port": sim.device_ports()["wedge"]})  # no mode
        assert dev.mode is None
        seen: list[DeviceEvent] = []
        reader = open_reader(dev, seen.append)  # the daemon's default guard
        task = asyncio.create_task(reader.run(), name="driver[wedge].read")
        try:
            await until(lambda: reader.status.state == "connected")
            for code in (f"X{PAN}", "5901234123457", f"%B{PAN}^DOE/J^2512?",
                         "4006381333931", "5555 5555 5555 4444", "96385074"):
                sim.scan("wedge", code)
            await until(lambda: len([e for e in seen if isinstance(
                e, ScanEvent | RejectedInput)]) >= 6)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    scans = [e.code for e in seen if isinstance(e, ScanEvent)]
    rejected = [e.reason for e in seen if isinstance(e, RejectedInput)]
    assert scans == ["5901234123457", "4006381333931", "96385074"]
    assert rejected == ["card_data_rejected"] * 3
    assert reader.status.card_data_rejected == 3


async def test_the_event_stream_masks_card_data_whoever_publishes() -> None:
    hub = EventHub()
    async with hub.subscribe({"scan"}) as queue:
        hub.publish("scan", {"device": "d", "code": f"X{PAN}",
                             "nested": [{"note": f"card {PAN}"}], "ok": "5901234123457"})
        topic, data = await asyncio.wait_for(queue.get(), 10)
    assert topic == "scan"
    assert PAN not in repr(data)
    assert data["ok"] == "5901234123457"
    assert data["code"] == "X[card data removed]"


def test_devices_tail_masks_cards_not_products() -> None:
    event = {"device": "till-1", "code": "5901234123457", "gtin": "05901234123457",
             "text": f"X{PAN}", "swipe": f";{PAN}=2512?"}
    shown = mask(event)
    assert shown["code"] == "5901234123457"
    assert shown["gtin"] == "05901234123457"
    assert PAN not in repr(shown)


@pytest.fixture
def log_capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("debug", "json")
    buffer = io.StringIO()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(buffer)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_log_lines_never_carry_card_data(log_capture: io.StringIO) -> None:
    log: Any = structlog.get_logger("test.guard")
    log.warning("scan refused", code=f"X{PAN}", items=[f"%B{PAN}^DOE/J^2512?"],
                gtin="5901234123457")
    logging.getLogger("some.library").warning("raw %s", f"card {PAN}")
    try:
        int(f"bad {PAN}")
    except ValueError:
        log.exception("failed")
    text = log_capture.getvalue()
    assert "scan refused" in text
    assert "5901234123457" in text
    assert PAN not in text
    assert "DOE/J" not in text
