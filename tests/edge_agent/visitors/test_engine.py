"""The engine on a real ledger file, driven through handle() with an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.events import BeaconEvent, DoorEvent, TagEvent
from edge_agent.config import Config
from edge_agent.services import AgentServices
from edge_agent.visitors.engine import VisitorsEngine
from edge_agent.visitors.pseudonym import pseudonym
from sync.wire import parse_ts
from tests.edge_agent.visitors.conftest import T0, Clock

Factory = Callable[..., AgentServices]


def device(config: Config, name: str) -> Any:
    return next(d for d in config.devices if d.name == name)


def facts(services: AgentServices, type_: str) -> list[dict[str, Any]]:
    rows = services.ledger.read_blocking(
        lambda conn: conn.execute(
            "SELECT payload FROM events WHERE type = ? ORDER BY id", (type_,)).fetchall())
    return [json.loads(row[0])["data"] for row in rows]


def tag(tag_id: str, present: bool = True) -> TagEvent:
    return TagEvent(device="rfid-1", tag_id=tag_id, technology="em4100", present=present)


async def test_visit_opens_and_closes_after_the_gap_with_its_dwell(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=300)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("0A1B2C3D4E"))
    clock.advance(1)
    engine.handle(rfid, tag("0A1B2C3D4E", present=False))
    # flapping: seen again 4 minutes later, within the gap -> the same visit
    clock.advance(240)
    engine.handle(rfid, tag("0A1B2C3D4E"))
    clock.advance(60)
    engine.handle(rfid, tag("0A1B2C3D4E", present=False))
    await engine.tick()
    assert facts(services, "visit") == []
    assert engine.figures()["open_visits"] == 1
    clock.advance(299)
    await engine.tick()
    assert facts(services, "visit") == []
    clock.advance(1)
    await engine.tick()
    [visit] = facts(services, "visit")
    assert visit["dwell_s"] == 301
    assert visit["source"] == "em4100"
    assert parse_ts(visit["entered_at"]).timestamp() == T0
    assert parse_ts(visit["left_at"]).timestamp() == T0 + 301
    assert len(visit["visitor"]) == 16
    assert "customer" not in visit
    assert engine.figures()["open_visits"] == 0
    # the report row exists, keyed by the pseudonym
    row = services.ledger.read_blocking(
        lambda conn: conn.execute("SELECT visitor, dwell_s, seq FROM visits").fetchone())
    assert (row[0], row[1]) == (visit["visitor"], 301)


async def test_presence_held_by_a_device_keeps_the_visit_open(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=60)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("11223344AA"))
    for _ in range(10):  # 10 minutes present without a new read: the reader says present
        clock.advance(60)
        await engine.tick()
    assert facts(services, "visit") == []
    engine.handle(rfid, tag("11223344AA", present=False))
    clock.advance(60)
    await engine.tick()
    [visit] = facts(services, "visit")
    assert visit["dwell_s"] == 600


async def test_footfall_periods_with_counts_and_empty_ones(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(footfall_period_s=900)
    door = device(services.config, "door-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    clock.advance(10)
    engine.handle(door, DoorEvent(device="door-1", direction="in", count=2))
    engine.handle(door, DoorEvent(device="door-1", direction="out", count=1))
    await engine.tick()  # counters persisted, period not over
    assert facts(services, "footfall") == []
    clock.advance(900)  # 10:15:10: the 10:00 period is over
    await engine.tick()
    clock.advance(1800)  # 10:45:10: two empty periods over
    await engine.tick()
    rows = facts(services, "footfall")
    assert [(r["period_start"], r["entries"], r["exits"]) for r in rows] == [
        ("2026-11-25T10:00:00.000Z", 2, 1),
        ("2026-11-25T10:15:00.000Z", 0, 0),
        ("2026-11-25T10:30:00.000Z", 0, 0),
    ]
    assert all(r["door"] == "door-1" and r["period_s"] == 900 for r in rows)
    # closing time (19:00 UTC = 20:00 Berlin): empty periods after it are not written
    clock.now = T0 + 9 * 3600 + 5  # 19:00:05 UTC
    await engine.tick()
    count_open = len(facts(services, "footfall"))
    clock.now = T0 + 12 * 3600 + 5  # 22:00 UTC, store closed
    await engine.tick()
    assert len(facts(services, "footfall")) == count_open
    assert facts(services, "footfall")[-1]["period_start"] == "2026-11-25T18:45:00.000Z"
    # a count while closed is still written
    engine.handle(door, DoorEvent(device="door-1", direction="in", count=1))
    clock.advance(900)
    await engine.tick()
    assert facts(services, "footfall")[-1]["entries"] == 1


async def test_footfall_counts_survive_a_restart_and_downtime_is_not_invented(
    open_services: Factory, clock: Clock, tmp_path: Path
) -> None:
    services = open_services()
    door = device(services.config, "door-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(door, DoorEvent(device="door-1", direction="in", count=3))
    await engine.flush(final=True)
    services.ledger.close()
    clock.advance(3 * 3600)  # down for three hours
    services2 = open_services()
    engine2 = VisitorsEngine(services2, clock=clock)
    await engine2.start()
    await engine2.tick()
    rows = facts(services2, "footfall")
    assert [(r["period_start"], r["entries"]) for r in rows] == [
        ("2026-11-25T10:00:00.000Z", 3)]


async def test_restart_closes_stale_visits_at_their_last_sighting(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=300)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("A1A2A3A4A5"))
    engine.handle(rfid, tag("B1B2B3B4B5"))
    clock.advance(40)
    engine.handle(rfid, tag("A1A2A3A4A5", present=False))
    await engine.flush(final=True)  # what run() does when cancelled
    services.ledger.close()
    clock.advance(120)  # A: 120 s after its last sighting; B: still present at shutdown
    services2 = open_services(absence_gap_s=100)
    engine2 = VisitorsEngine(services2, clock=clock)
    await engine2.start()
    visits = facts(services2, "visit")
    assert len(visits) == 2  # both past the 100 s gap (B's last state is T0+40)
    assert sorted(v["dwell_s"] for v in visits) == [40, 40]
    assert engine2.figures()["open_visits"] == 0


async def test_restart_within_the_gap_restores_the_visit(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=300)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("A1A2A3A4A5"))
    clock.advance(30)
    engine.handle(rfid, tag("A1A2A3A4A5", present=False))
    await engine.flush(final=True)
    services.ledger.close()
    clock.advance(60)
    services2 = open_services(absence_gap_s=300)
    engine2 = VisitorsEngine(services2, clock=clock)
    await engine2.start()
    assert engine2.figures()["open_visits"] == 1
    engine2.handle(rfid, tag("A1A2A3A4A5"))  # same key, same pseudonym: same visit
    clock.advance(10)
    engine2.handle(rfid, tag("A1A2A3A4A5", present=False))
    clock.advance(300)
    await engine2.tick()
    [visit] = facts(services2, "visit")
    assert visit["dwell_s"] == 100


def checkpointed_bytes(path: Path) -> bytes:
    """The database file and its WAL after a full checkpoint (as an auditor would read)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def key_rows(services: AgentServices) -> list[bytes]:
    return [bytes(r[0]) for r in services.ledger.read_blocking(
        lambda conn: conn.execute("SELECT key FROM visitor_keys").fetchall())]


async def test_key_rotation_changes_pseudonyms_and_destroys_the_old_key(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=60, key_rotation_s=3600)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    [old_key] = key_rows(services)
    for _ in range(2):  # two visits of the same shopper in one key period
        engine.handle(rfid, tag("CAFE0000AA"))
        engine.handle(rfid, tag("CAFE0000AA", present=False))
        clock.advance(120)
        await engine.tick()
    clock.now = T0 + 3600
    await engine.tick()  # rotation
    assert engine.figures()["key_rotations"] == 1
    [new_key] = key_rows(services)
    assert new_key != old_key
    clock.advance(600)  # past the grace period
    await engine.tick()
    engine.handle(rfid, tag("CAFE0000AA"))
    engine.handle(rfid, tag("CAFE0000AA", present=False))
    clock.advance(120)
    await engine.tick()
    visitors = [v["visitor"] for v in facts(services, "visit")]
    assert len(visitors) == 3
    assert visitors[0] == visitors[1] == pseudonym(old_key, "CAFE0000AA")
    assert visitors[2] == pseudonym(new_key, "CAFE0000AA") != visitors[0]
    # the old key's bytes are gone from the file once the WAL is checkpointed
    services.ledger.close()
    data = checkpointed_bytes(Path(services.config.database.path))
    assert old_key not in data
    assert new_key in data  # the search can find a key when it is there


async def test_a_rotation_while_a_shopper_is_in_keeps_one_visit(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=300, key_rotation_s=3600)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    clock.now = T0 + 3590
    engine.handle(rfid, tag("0000BEEF01"))
    engine.handle(rfid, tag("0000BEEF01", present=False))
    clock.now = T0 + 3600
    await engine.tick()  # rotation, shopper still in
    clock.advance(60)
    engine.handle(rfid, tag("0000BEEF01"))
    engine.handle(rfid, tag("0000BEEF01", present=False))
    clock.advance(300)
    await engine.tick()
    [visit] = facts(services, "visit")
    assert visit["dwell_s"] == 70


async def test_retention_deletes_old_visit_rows_not_events(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=60, retention_days=2)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("0101010101"))
    engine.handle(rfid, tag("0101010101", present=False))
    clock.advance(60)
    await engine.tick()

    def count_rows(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM visits").fetchone()[0])

    assert services.ledger.read_blocking(count_rows) == 1
    clock.advance(2 * 86400 - 100)
    await engine.tick()
    assert services.ledger.read_blocking(count_rows) == 1
    clock.advance(3600)
    await engine.tick()
    assert services.ledger.read_blocking(count_rows) == 0
    assert len(facts(services, "visit")) == 1  # the sent fact stays


async def test_disk_pressure_sheds_presence_not_doors(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services()
    free = {"bytes": 10**9}
    engine = VisitorsEngine(services, clock=clock, disk_free=lambda _path: free["bytes"])
    await engine.start()
    rfid, door = device(services.config, "rfid-1"), device(services.config, "door-1")
    free["bytes"] = 10  # below min_free_bytes (1000 in the test config)
    await engine.tick()
    engine.handle(rfid, tag("5555555555"))
    engine.handle(door, DoorEvent(device="door-1", direction="in", count=1))
    figures = engine.figures()
    assert figures["shedding"] is True
    assert figures["presence_shed"] == 1
    assert figures["open_visits"] == 0
    assert figures["door_entries"] == 1
    free["bytes"] = 10**9
    await engine.tick()
    engine.handle(rfid, tag("5555555555"))
    assert engine.figures()["open_visits"] == 1
    assert engine.figures()["shedding"] is False


async def test_handle_never_raises_and_ignores_devices_without_presence_role(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(devices=[
        {"kind": "em4100", "name": "till-rfid", "port": "/dev/null", "mode": "sale"},
        {"kind": "uhf", "name": "uhf-1", "port": "/dev/null", "role": "presence"},
        {"kind": "ble_beacon", "name": "ble-1", "source": "hci0", "role": "presence",
         "ibeacon_uuids": ["f7826da6-4fa2-4e98-8024-bc5b71e0893e"]},
    ])
    engine = VisitorsEngine(services, clock=clock)
    engine.handle(device(services.config, "uhf-1"), tag("X"))  # before start(): counted
    await engine.start()
    engine.handle(device(services.config, "till-rfid"), tag("0A0A0A0A0A"))
    product = TagEvent(device="uhf-1", tag_id="3034257BF7194E4000001A85", technology="uhf",
                       present=True, epc_gtin="80614141123458", epc_serial="6789")
    engine.handle(device(services.config, "uhf-1"), product)
    engine.handle(device(services.config, "uhf-1"), "not an event")  # type: ignore[arg-type]
    beacon = BeaconEvent(device="ble-1", beacon_id="f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:2",
                         rssi=-60, tx_power=-59, present=True)
    engine.handle(device(services.config, "ble-1"), beacon)
    figures = engine.figures()
    assert figures["not_started"] == 1
    assert figures["presence_ignored"] == 1
    assert figures["product_tags_ignored"] == 1
    assert figures["handle_errors"] == 1
    assert figures["open_visits"] == 1


async def test_run_ticks_and_saves_open_visits_when_cancelled(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=300)
    rfid = device(services.config, "rfid-1")
    engine = VisitorsEngine(services, clock=clock, tick_s=0.01)
    task = asyncio.create_task(engine.run(), name="visitors.run")
    await asyncio.sleep(0.1)  # run() starts the engine itself
    engine.handle(rfid, tag("ABCDEF0123"))
    clock.advance(20)
    await asyncio.sleep(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    rows = services.ledger.read_blocking(lambda conn: conn.execute(
        "SELECT entered_at, last_seen FROM visit_open").fetchall())
    assert [tuple(r) for r in rows] == [(T0, T0 + 20)]


async def test_disabled_destroys_the_key_and_records_nothing(
    open_services: Factory, clock: Clock, tmp_path: Path
) -> None:
    services = open_services()
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(device(services.config, "rfid-1"), tag("ABCDEF0123"))
    await engine.flush(final=True)
    [old_key] = key_rows(services)
    services.ledger.close()
    services2 = open_services(enabled=False)
    engine2 = VisitorsEngine(services2, clock=clock)
    await engine2.start()
    engine2.handle(device(services2.config, "rfid-1"), tag("ABCDEF0123"))
    engine2.handle(device(services2.config, "door-1"),
                   DoorEvent(device="door-1", direction="in", count=1))
    clock.advance(3600)
    await engine2.tick()
    assert key_rows(services2) == []
    assert facts(services2, "visit") == facts(services2, "footfall") == []
    assert services2.ledger.read_blocking(
        lambda conn: conn.execute("SELECT count(*) FROM visit_open").fetchone()[0]) == 0
    services2.ledger.close()
    assert old_key not in checkpointed_bytes(Path(services2.config.database.path))


async def test_a_failed_write_is_retried_and_recorded_once(
    open_services: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.errors import DiskFull  # noqa: PLC0415
    from edge_agent.visitors import store  # noqa: PLC0415

    services = open_services(absence_gap_s=60)
    rfid, door = device(services.config, "rfid-1"), device(services.config, "door-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    engine.handle(rfid, tag("ABABABABAB"))
    engine.handle(rfid, tag("ABABABABAB", present=False))
    engine.handle(door, DoorEvent(device="door-1", direction="in", count=2))
    real = store.emit_footfall
    failures = {"left": 1}

    def failing(*args: Any, **kwargs: Any) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise DiskFull("injected: the disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "emit_footfall", failing)
    clock.advance(900)
    await engine.tick()  # the whole transaction fails: nothing recorded, all kept
    assert engine.figures()["write_errors"] == 1
    assert facts(services, "visit") == facts(services, "footfall") == []
    await engine.tick()
    assert len(facts(services, "visit")) == 1
    assert [(f["entries"]) for f in facts(services, "footfall")] == [2]
    await engine.tick()
    assert len(facts(services, "visit")) == 1
