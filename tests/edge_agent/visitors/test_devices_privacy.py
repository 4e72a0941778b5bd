"""End to end over simulated ptys (EM4100, UHF, door counter) and the simulator's BLE
source, with real readers (drivers.open_reader): visits, footfall, conversion, and no raw
identifier anywhere — database file, WAL, logs, hub messages, event payloads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from drivers import DeviceEvent, open_reader
from drivers.events import BeaconEvent, DoorEvent, TagEvent
from drivers.simulator import Simulator
from edge_agent.config_load import parse_config
from edge_agent.ledger import Ledger
from edge_agent.logs import configure_logging
from edge_agent.services import AgentServices
from edge_agent.visitors.engine import VisitorsEngine
from edge_agent.visitors.report import periods, visitors_today
from sync.customer_ids import keyed_hash
from tests.edge_agent.customers.helpers import PEPPER, customer_entry, install
from tests.edge_agent.visitors.conftest import T0, Clock, insert_sale

BEACON_UUID = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
EM_TAGS = ["0A1B2C3D4E", "7F00FF1234"]
LOYAL_TAG = "4C0FFEE123"
UHF_EPC = bytes.fromhex("E28011700000020F1A2B3C4D")  # not an SGTIN: a loyalty tag, not stock
MAC = "D4:3A:2C:9E:51:07"


@pytest.fixture
def log_capture() -> Any:
    """Route every structlog/stdlib record (debug and up) into a buffer."""
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


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "dev", em4100_repeat_s=0.05, uhf_round_s=0.05,
                         ble_interval_s=0.05) as s:
        s.add_em4100("rfid-1")
        s.add_uhf("uhf-1")
        s.add_door("door-1")
        s.add_beacons("ble-1", ibeacon_uuids=[BEACON_UUID])
        await s.start()
        yield s


def forms(raw: str) -> set[bytes]:
    """Every way a raw id could show up in bytes: ASCII in any case, hex of it, its binary
    value when it is hex (tag ids, EPCs, MACs, UUIDs), and its unkeyed SHA-256."""
    out: set[bytes] = set()
    for text in {raw, raw.upper(), raw.lower()}:
        out.add(text.encode())
        out.add(text.encode().hex().encode())
        compact = text.replace(":", "").replace("-", "")
        out.add(compact.encode())
        with contextlib.suppress(ValueError):
            out.add(bytes.fromhex(compact))
    out.add(hashlib.sha256(raw.strip().upper().encode()).hexdigest().encode())
    return {form for form in out if len(form) >= 5}


async def wait_for(pred: Callable[[], bool], within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def file_bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_devices_to_visits_footfall_conversion_without_raw_ids(
    tmp_path: Path, sim: Simulator, log_capture: io.StringIO
) -> None:
    clock = Clock(T0)
    routing = {
        "rfid-1": {"role": "presence", "zone": "entrance", "gone_after_s": 0.3},
        "uhf-1": {"role": "presence", "zone": "entrance", "dedup_window_s": 0.3},
        "ble-1": {"role": "presence", "zone": "shop-floor", "dedup_window_s": 0.3,
                  "rssi_threshold": -80},
        "door-1": {"role": "door", "zone": "entrance"},
    }
    fast = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2}
    devices = [{**entry, **fast, **routing[str(entry["name"])]}
               for entry in sim.config_entries()]
    config = parse_config({
        "store": {"id": "S001", "timezone": "UTC", "opening_hours": ["08:00", "20:00"]},
        "database": {"path": str(tmp_path / "db" / "ledger.db"), "min_free_bytes": 0},
        "devices": devices,
        "visitors": {"absence_gap_s": 120, "footfall_period_s": 900},
    }, tmp_path / "config.toml")
    ledger = Ledger.open(config.database.path, config.store.id)
    services = AgentServices(config=config, ledger=ledger)
    ledger.write_blocking(lambda tx: install(tx, [customer_entry("C-1001",
                                                                 [("tag", LOYAL_TAG)])]))
    engine = VisitorsEngine(services, clock=clock)
    by_name = {d.name: d for d in config.devices}
    presence: list[DeviceEvent] = []

    def emit(event: DeviceEvent) -> None:
        if isinstance(event, TagEvent | BeaconEvent | DoorEvent):
            presence.append(event)
            engine.handle(by_name[event.device], event)

    hub_messages: list[tuple[str, dict[str, Any]]] = []
    tasks: list[asyncio.Task[None]] = []
    async with services.hub.subscribe() as queue:
        await engine.start()
        for settings in config.devices:
            reader = open_reader(settings, emit)
            tasks.append(asyncio.create_task(reader.run(), name=f"driver[{reader.name}].run"))
        try:
            # -- shoppers arrive at T0 (engine clock) ----------------------------------
            for tag_id in EM_TAGS[:1]:
                sim.tag_present("rfid-1", tag_id)
            sim.uhf_tag_present("uhf-1", UHF_EPC)
            beacon_id = sim.ibeacon("ble-1", BEACON_UUID, 100, 7, rssi=-60)
            await wait_for(lambda: engine.figures()["open_visits"] == 3)
            # flapping: the EM tag leaves the field and comes back before the gap
            sim.tag_gone("rfid-1", EM_TAGS[0])
            await wait_for(lambda: any(isinstance(e, TagEvent) and not e.present
                                       for e in presence))
            clock.advance(30)
            sim.tag_present("rfid-1", EM_TAGS[0])
            sim.tag_present("rfid-1", EM_TAGS[1])
            sim.door("door-1", "in", 3)
            await wait_for(lambda: engine.figures()["open_visits"] == 4
                           and engine.figures()["door_entries"] == 3)
            clock.advance(30)  # T0+60: the loyal customer taps in
            sim.tag_present("rfid-1", LOYAL_TAG)
            await wait_for(lambda: engine.figures()["customers_arrived"] == 1)
            await engine.tick()
            clock.advance(60)  # T0+120: everyone leaves
            for tag_id in [*EM_TAGS, LOYAL_TAG]:
                sim.tag_gone("rfid-1", tag_id)
            sim.uhf_tag_gone("uhf-1", UHF_EPC)
            sim.beacon_gone("ble-1", beacon_id)
            sim.door("door-1", "out", 2)
            await wait_for(lambda: sum(isinstance(e, TagEvent | BeaconEvent) and not e.present
                                       for e in presence) >= 6
                           and engine.figures()["door_exits"] == 2)
            await engine.tick()
            assert engine.figures()["open_visits"] == 5
            clock.advance(120)
            await engine.tick()
            assert engine.figures()["open_visits"] == 0
            # an anonymous phone beacon with a MAC-like id, handed to the engine directly
            engine.handle(by_name["ble-1"], BeaconEvent(device="ble-1", beacon_id=MAC,
                                                         rssi=-50, tx_power=None, present=True))
            clock.now = T0 + 900 + 5  # the first footfall period is over
            await engine.tick()
            while not queue.empty():
                hub_messages.append(queue.get_nowait())
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    await engine.flush(final=True)

    # -- visits, footfall, conversion ------------------------------------------------------
    def payloads(conn: sqlite3.Connection) -> list[bytes]:
        return [bytes(r[0]) for r in conn.execute("SELECT payload FROM events ORDER BY id")]

    events = [json.loads(p) for p in ledger.read_blocking(payloads)]
    visits = [e["data"] for e in events if e["type"] == "visit"]
    assert len(visits) == 5
    assert sorted(v["source"] for v in visits) == ["ble", "em4100", "em4100", "em4100", "uhf"]
    em_first = [v for v in visits if v["entered_at"] == "2026-11-25T10:00:00.000Z"
                and v["source"] == "em4100"]
    assert [v["dwell_s"] for v in em_first] == [120]  # one visit despite the flap
    assert [v.get("customer") for v in visits].count("C-1001") == 1
    [footfall] = [e["data"] for e in events if e["type"] == "footfall"]
    assert (footfall["entries"], footfall["exits"]) == (3, 2)
    ledger.write_blocking(lambda tx: insert_sale(tx, "s-1", "2026-11-25T10:05:00.000Z"))
    summary = ledger.read_blocking(lambda conn: visitors_today(conn, now=T0 + 1000))
    assert (summary["visits"], summary["entries"], summary["sales"]) == (5, 3, 1)
    assert summary["sales_per_visit"] == 0.2
    assert summary["sales_per_entry"] == round(1 / 3, 4)
    first = ledger.read_blocking(lambda conn: periods(conn, T0, T0 + 900))
    assert [(p["visits"], p["entries"], p["sales"]) for p in first] == [(5, 3, 1)]
    arrived = [data for topic, data in hub_messages if topic == "customer_arrived"]
    assert arrived == [{"customer": "C-1001", "zone": "entrance", "device": "rfid-1",
                        "visit_id": arrived[0]["visit_id"], "ts": "2026-11-25T10:01:00.000Z"}]

    # -- no raw identifier anywhere ------------------------------------------------------------
    db_path = Path(config.database.path)
    stored = await asyncio.to_thread(
        lambda: file_bytes(db_path) + file_bytes(Path(f"{db_path}-wal")))
    ledger.close()
    logs = log_capture.getvalue().encode()
    assert b"visitors engine started" in logs  # the capture works
    sent = b"\n".join(json.dumps(e).encode() for e in events)
    hub = json.dumps(hub_messages).encode()
    raw_ids = [*EM_TAGS, UHF_EPC.hex().upper(), str(BEACON_UUID), beacon_id, MAC]
    for raw in raw_ids:
        for form in forms(raw):
            for where, blob in (("database", stored), ("logs", logs), ("events", sent),
                                ("hub", hub)):
                assert form not in blob, f"a form of a raw id is in the {where}"
    # the loyal tag: its keyed hash is in the customer cache by design, never the raw id
    # nor its unkeyed SHA-256
    keyed = keyed_hash(PEPPER, "tag", LOYAL_TAG.upper())
    for form in forms(LOYAL_TAG):
        for blob in (stored, logs, sent, hub):
            assert form not in blob
    assert keyed in stored  # the search does see what is there
