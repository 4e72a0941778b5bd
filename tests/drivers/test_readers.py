"""Readers end to end over real ptys (the simulator) and a real TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from drivers import DeviceEvent, DeviceReader, DeviceSettings, open_reader
from drivers.carddata import make_filter
from drivers.epc import encode_sgtin96
from drivers.events import (
    BeaconEvent,
    DeviceStateEvent,
    DoorEvent,
    RejectedInput,
    ScanEvent,
    TagEvent,
)
from drivers.hid import EV_KEY, key_events_for
from drivers.reader_base import backoff_delay
from drivers.readers import HidScannerReader
from drivers.simulator import Simulator

TA: TypeAdapter[DeviceSettings] = TypeAdapter(DeviceSettings)
FAST = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2}
U = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")


class Harness:
    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, settings: dict[str, Any], **kw: Any) -> DeviceReader:
        reader = open_reader(TA.validate_python({**FAST, **settings}), self.events.append, **kw)
        self.tasks.append(asyncio.create_task(reader.run(), name=f"driver[{reader.name}].run"))
        return reader

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait(self, pred: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events: {self.events[-10:]}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    for t in harness.tasks:
        t.cancel()
    for t in harness.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
        assert t.cancelled()  # run() ended only by cancellation


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "dev", em4100_repeat_s=0.05, uhf_round_s=0.05) as s:
        await s.start()
        yield s


def connected(h: Harness, name: str) -> Callable[[], bool]:
    return lambda: any(
        isinstance(e, DeviceStateEvent) and e.device == name and e.state == "connected"
        for e in h.events
    )


async def test_serial_scanner_scans_card_data_and_replug(h: Harness, sim: Simulator) -> None:
    sim.add_scanner("till-1", suffix="CRLF")
    entry = sim.config_entries()[0]
    known = {"05901234123457"}
    r = h.start(entry, card_filter=make_filter(known.__contains__))
    await h.wait(connected(h, "till-1"))
    sim.scan("till-1", "5901234123457", aim="]E0")
    sim.swipe("till-1", "%B4111111111111111^DOE/JOHN^2512101?")
    sim.scan("till-1", "0100614141999996\x1d10LOT", aim="]C1")
    await h.wait(lambda: len(h.of(ScanEvent)) == 2)
    assert [(e.code, e.symbology) for e in h.of(ScanEvent)] == [
        ("5901234123457", "]E0"),
        ("0100614141999996\x1d10LOT", "]C1"),
    ]
    assert [e.reason for e in h.of(RejectedInput)] == ["card_data_rejected"]
    assert "4111" not in repr(h.events)
    assert (r.status.reads, r.status.card_data_rejected) == (2, 1)

    sim.unplug("till-1")
    await h.wait(lambda: r.status.state == "disconnected")
    await asyncio.sleep(0.3)  # a few failed reopen attempts while unplugged
    sim.replug("till-1")
    await h.wait(lambda: r.status.state == "connected")
    sim.scan("till-1", "96385074")
    await h.wait(lambda: len(h.of(ScanEvent)) == 3)
    st = r.status
    assert (st.reconnects, st.state, st.port) == (1, "connected", entry["port"])
    states = [e.state for e in h.of(DeviceStateEvent)]
    assert states[0] == "connected"
    assert "disconnected" in states
    assert states[-1] == "connected"


async def test_absent_port_keeps_retrying_then_connects(h: Harness, sim: Simulator) -> None:
    sim.add_door("door-1")
    entry = sim.config_entries()[0]
    sim.unplug("door-1")
    r = h.start(entry)
    await h.wait(lambda: r.status.state == "disconnected" and "No such file" in r.status.detail)
    sim.replug("door-1")
    await h.wait(lambda: r.status.state == "connected")
    sim.door("door-1", "in", 2)
    sim.write("door-1", b"garbage line\r\nOUT 1\r\n")
    await h.wait(lambda: len(h.of(DoorEvent)) == 2)
    assert [(e.direction, e.count) for e in h.of(DoorEvent)] == [("in", 2), ("out", 1)]
    assert r.status.frames_rejected == 1
    assert r.status.reconnects == 0  # first successful open is not a reconnect


@pytest.mark.parametrize("variant", ["rdm6300", "id12la"])
async def test_em4100_present_then_gone(h: Harness, sim: Simulator, variant: Any) -> None:
    sim.add_em4100("rfid-1", variant=variant)
    r = h.start({**sim.config_entries()[0], "gone_after_s": 0.3})
    await h.wait(connected(h, "rfid-1"))
    sim.tag_present("rfid-1", "0A1B2C3D4E")
    sim.corrupt("rfid-1") if variant == "rdm6300" else None
    await asyncio.sleep(0.5)  # ~10 repeated frames
    sim.tag_gone("rfid-1", "0A1B2C3D4E")
    await h.wait(lambda: len(h.of(TagEvent)) == 2)
    tags = h.of(TagEvent)
    assert [(t.tag_id, t.present, t.technology) for t in tags] == [
        ("0A1B2C3D4E", True, "em4100"),
        ("0A1B2C3D4E", False, "em4100"),
    ]
    assert r.status.reads >= 5  # repeats were read, but deduplicated
    assert r.status.frames_rejected == (1 if variant == "rdm6300" else 0)


async def test_uhf_inventory_commands_and_tags(h: Harness, sim: Simulator) -> None:
    sim.add_uhf("uhf-1")
    r = h.start({**sim.config_entries()[0], "dedup_window_s": 0.3, "poll_restart_s": 0.2})
    await h.wait(lambda: sim.device("uhf-1").polling)
    epc = encode_sgtin96("80614141123458", 6789, 7)
    sim.uhf_tag_present("uhf-1", epc, rssi=-48)
    sim.corrupt("uhf-1")
    await h.wait(lambda: len(h.of(TagEvent)) == 1)
    t = h.of(TagEvent)[0]
    assert (t.tag_id, t.rssi, t.epc_gtin, t.epc_serial, t.present) == (
        epc.hex().upper(),
        -48,
        "80614141123458",
        "6789",
        True,
    )
    await asyncio.sleep(0.3)
    sim.uhf_tag_gone("uhf-1", epc)
    await h.wait(lambda: len(h.of(TagEvent)) == 2)
    assert h.of(TagEvent)[1].present is False
    cmds = [c.cmd for c in sim.device("uhf-1").commands]
    assert cmds.count(0x27) >= 2  # started, then re-armed
    assert r.status.frames_rejected >= 1
    # stop on cancel
    for task in h.tasks:
        task.cancel()
    await asyncio.gather(*h.tasks, return_exceptions=True)
    await h.wait(lambda: 0x28 in [c.cmd for c in sim.device("uhf-1").commands], within=2)


async def test_ble_sim_source(h: Harness, sim: Simulator) -> None:
    sim.add_beacons("ble-1", ibeacon_uuids=[U])
    h.start({**sim.config_entries()[0], "dedup_window_s": 0.4, "rssi_threshold": -80})
    await h.wait(connected(h, "ble-1"))
    bid = sim.ibeacon("ble-1", U, 7, 9, rssi=-61)
    sim.ibeacon("ble-1", uuid.uuid4(), 1, 1)  # not configured
    sim.ibeacon("ble-1", U, 8, 8, rssi=-95)  # too weak
    await h.wait(lambda: len(h.of(BeaconEvent)) == 1)
    await asyncio.sleep(0.5)
    sim.beacon_gone("ble-1", bid)
    await h.wait(lambda: len(h.of(BeaconEvent)) == 2, within=3)
    assert [(e.beacon_id, e.present, e.tx_power) for e in h.of(BeaconEvent)] == [
        (bid, True, -59),
        (bid, False, -59),
    ]


async def test_scanner_over_socket_url(h: Harness) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = h.start({"kind": "serial_scanner", "name": "net-1", "port": f"socket://127.0.0.1:{port}"})
    await h.wait(lambda: bool(writers))
    writers[0].write(b"]E09638507\r4\r96385074\r")
    await writers[0].drain()
    await h.wait(lambda: len(h.of(ScanEvent)) == 3)
    assert [e.code for e in h.of(ScanEvent)] == ["9638507", "4", "96385074"]
    writers[0].close()  # the remote end goes away: the reader reconnects by itself
    await h.wait(lambda: len(writers) == 2)
    await h.wait(lambda: r.status.reconnects == 1)
    for task in h.tasks:
        task.cancel()
    await asyncio.gather(*h.tasks, return_exceptions=True)
    for w in writers:
        w.close()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
    server.close()
    await server.wait_closed()


class FakeKeySource:
    """Stands in for an evdev InputDevice (the allowed fake)."""

    def __init__(self, events: list[tuple[int, int, int]]) -> None:
        self._events = events
        self.closed = False

    async def events(self) -> AsyncIterator[tuple[int, int, int]]:
        for e in self._events:
            yield e
        raise OSError(19, "No such device")  # unplugged after the sequence

    def close(self) -> None:
        self.closed = True


async def test_hid_reader_with_fake_device(h: Harness) -> None:
    seq = [(EV_KEY, c, v) for c, v in key_events_for("]E0036000291452")]
    seq += [(0, 0, 0)]  # EV_SYN is ignored
    seq += [(EV_KEY, c, v) for c, v in key_events_for(";4111111111111111=2512?")]
    sources: list[FakeKeySource] = []

    def factory(path: str, grab: bool) -> FakeKeySource:
        assert (path, grab) == ("/dev/input/by-id/usb-scanner-event-kbd", True)
        sources.append(FakeKeySource(seq))
        return sources[-1]

    settings = TA.validate_python(
        {
            **FAST,
            "kind": "hid_scanner",
            "name": "hid-1",
            "path": "/dev/input/by-id/usb-scanner-event-kbd",
        }
    )
    reader = HidScannerReader(settings, h.events.append, source_factory=factory)  # type: ignore[arg-type]
    h.tasks.append(asyncio.create_task(reader.run(), name="driver[hid-1].run"))
    await h.wait(lambda: len(sources) >= 2)  # read, lost, reopened
    scans = h.of(ScanEvent)
    assert (scans[0].code, scans[0].symbology) == ("036000291452", "]E0")
    assert reader.status.card_data_rejected >= 1
    assert all(s.closed for s in sources[:-1])
    assert "4111" not in repr(h.events)


async def test_hid_and_ble_report_unavailable(h: Harness) -> None:
    hid = h.start({"kind": "hid_scanner", "name": "hid-2", "path": "/dev/input/event99"})
    ble = h.start({"kind": "ble_beacon", "name": "ble-2", "ibeacon_uuids": [str(U)]})
    await h.wait(lambda: hid.status.state == "error" and ble.status.state == "error")
    assert "evdev" in hid.status.detail
    assert "bleak" in ble.status.detail


def test_backoff_is_jittered_and_capped() -> None:
    delays = [backoff_delay(a, 0.5, 30.0) for a in range(12) for _ in range(5)]
    assert all(0.25 <= d <= 30.0 for d in delays)
    assert max(delays) > 15
    assert len({round(d, 6) for d in delays}) > 50  # jittered, not lockstep
