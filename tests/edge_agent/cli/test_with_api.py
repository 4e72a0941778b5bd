"""The CLI against the agent's real API app (FastAPI + uvicorn) on a real Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.api.app import create_app
from edge_agent.api.server import serve_api
from edge_agent.config_load import load_config
from edge_agent.ledger import Ledger
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from tests.edge_agent.cli.conftest import STORE, as_json, db_path, invoke, seed, write_config

CARD = "4111111111111111"


@dataclass
class LiveApi:
    config: Path
    services: AgentServices
    loop: asyncio.AbstractEventLoop

    def publish(self, topic: str, data: dict[str, object]) -> None:
        self.loop.call_soon_threadsafe(self.services.hub.publish, topic, data)


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[LiveApi]:
    config_path = write_config(tmp_path, devices=(
        '[[devices]]\nname = "till-1"\nkind = "serial_scanner"\nport = "/dev/null"\n'))
    seed(db_path(tmp_path))
    config = load_config(config_path)
    ledger = Ledger.open(config.database.path, STORE)
    services = AgentServices(config=config, ledger=ledger)
    retail = RetailService(ledger, config.store, controls=config.controls, hub=services.hub)
    app = create_app(services, retail=retail)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    task_box: list[asyncio.Task[None]] = []

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve_api(app, config.api, ready=ready), name="test.api")
        task_box.append(task)
        await ready.wait()
        started.set()
        await task

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the fixture cancels the server
            loop.run_until_complete(main())

    thread = threading.Thread(target=run, name="test-api-loop", daemon=True)
    thread.start()
    assert started.wait(15), "the API did not start"
    try:
        yield LiveApi(config_path, services, loop)
    finally:
        loop.call_soon_threadsafe(task_box[0].cancel)
        thread.join(15)
        loop.close()
        ledger.close()


def test_status_outbox_stock_devices_from_the_live_api(live_api: LiveApi) -> None:
    status = invoke(live_api.config, "status", "--json")
    assert status.exit_code == 0, status.output
    data = as_json(status)
    assert data["source"] == "daemon"
    assert data["store"] == STORE
    assert data["last_seq"] == 4
    assert data["outbox"]["pending"] == 3
    assert "daemon not running" not in status.stderr
    assert invoke(live_api.config, "status").exit_code == 0

    outbox = as_json(invoke(live_api.config, "outbox", "--limit", "2", "--json"))
    assert outbox["pending"] == 3
    assert [(i["seq"], i["type"]) for i in outbox["items"]] == [(2, "receipt"), (3, "sale")]
    assert outbox["oldest_age_s"] is not None

    stock = as_json(invoke(live_api.config, "stock", "A-1", "--json"))
    assert (stock["on_hand"], stock["available"], stock["name"]) == (8, 8, "Blue mug")
    low = as_json(invoke(live_api.config, "stock", "low", "--json"))
    assert [i["sku"] for i in low["items"]] == ["B-2"]

    devices = invoke(live_api.config, "devices", "list", "--json")
    assert devices.exit_code == 0, devices.output
    assert as_json(devices)["source"] == "daemon"


def test_sync_without_sync_running_is_a_clear_refusal(live_api: LiveApi) -> None:
    result = invoke(live_api.config, "sync", "now")
    assert result.exit_code == 1
    assert "sync with central is not running" in result.stderr
    assert "HTTP 503" in result.stderr


def test_devices_tail_over_the_live_stream_masks_card_data(live_api: LiveApi) -> None:
    stop = threading.Event()

    def publisher() -> None:
        while not stop.wait(0.1):
            live_api.publish("scan", {"device": "till-1", "code": "4006381333931"})
            live_api.publish("scan_rejected", {"device": "till-1", "code": CARD})

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    result = invoke(live_api.config, "devices", "tail", "till-1", "--duration", "1")
    stop.set()
    thread.join(5)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 10
    assert "4006381333931" in result.stdout
    assert "scan_rejected" in result.stdout
    assert CARD not in result.stdout


def test_devices_tail_ends_on_time_while_events_flow(live_api: LiveApi) -> None:
    """--duration is a duration, not "seconds without events"; basket and session events
    are followed by default; humans get ISO times and readable fields, --json one object
    per line."""
    stop = threading.Event()

    def publisher() -> None:
        while not stop.wait(0.05):
            live_api.publish("scan", {"device": "till-1", "code": "4006381333931",
                                      "symbology": None, "ts": 1796408716.916855})
            live_api.publish("basket", {"action": "add", "terminal": "T1", "total": "12.90",
                                        "lines": [{"line_no": 1, "sku": "A-1", "qty": 1}]})
            live_api.publish("session", {"action": "close", "kind": "receive",
                                         "terminal": "BR", "lines": [{"sku": "B-2", "qty": 3}]})

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        human = invoke(live_api.config, "devices", "tail", "--duration", "2")
        machine = invoke(live_api.config, "devices", "tail", "--duration", "2", "--json")
    finally:  # without a bounded duration the invokes above would never return
        stop.set()
        thread.join(5)
    assert human.exit_code == 0, human.output
    out = human.stdout
    assert "2026-12-04T18:25:16Z  scan" in out
    assert "1796408716" not in out
    assert "symbology" not in out  # fields without a value are left out
    assert "[1xA-1]" in out
    assert "{'line_no'" not in out
    assert "session" in out
    assert "[3xB-2]" in out
    assert machine.exit_code == 0, machine.output
    lines = [ln for ln in machine.stdout.splitlines() if ln.strip()]
    assert len(lines) > 3
    events = [json.loads(ln) for ln in lines]  # every line is one whole event
    assert {e["event"] for e in events} >= {"scan", "basket", "session"}


def test_devices_tail_refuses_an_unknown_topic(live_api: LiveApi) -> None:
    result = invoke(live_api.config, "devices", "tail", "--topics", "scan,bogus",
                    "--duration", "1")
    assert result.exit_code == 2
    assert "bogus" in result.stderr
    assert "basket" in result.stderr  # the valid topics are named


def test_outbox_shows_bytes_and_per_epoch_watermarks(live_api: LiveApi) -> None:
    for source in ("daemon", "database"):
        if source == "database":  # the same answer when the agent is not running
            live_api.config.with_name("api.sock").unlink(missing_ok=True)
        machine = as_json(invoke(live_api.config, "outbox", "--json"))
        assert all(isinstance(i["bytes"], int) and i["bytes"] > 0 for i in machine["items"])
        assert [(e["last_seq"], e["acked_seq"], e["pending"]) for e in machine["epochs"]] \
            == [(4, 1, 3)], source
        human = invoke(live_api.config, "outbox").stdout
        assert "per-epoch watermarks" in human
        row = next(ln for ln in human.splitlines() if "receipt" in ln)
        assert re.search(r"\b\d{2,}\s*│?\s*$", row.rstrip("│ ").rstrip()), row  # bytes filled


def test_text_status_shows_what_json_shows(live_api: LiveApi) -> None:
    live_api.services.count("scans")
    data = as_json(invoke(live_api.config, "status", "--json"))
    text = invoke(live_api.config, "status").stdout
    for name, value in data["counters"].items():
        assert re.search(rf"{re.escape(name)}\s*│\s*{value}\b", text), (name, text)
    assert data["boot_id"] in text
    assert "last broker error" in text
