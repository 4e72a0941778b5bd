"""The simulator as a library (config snippet) and as a background process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import tomllib
import uuid
from pathlib import Path

from pydantic import TypeAdapter
from structlog.testing import capture_logs

from drivers import DeviceEvent, DeviceSettings, ScanEvent, open_reader
from drivers.simulator import Simulator


def _lexists(path: str | Path) -> bool:
    return os.path.lexists(path)


TA: TypeAdapter[list[DeviceSettings]] = TypeAdapter(list[DeviceSettings])
ROOT = Path(__file__).resolve().parents[2]


async def test_config_toml_validates_and_symlinks_point_at_ptys(tmp_path: Path) -> None:
    async with Simulator(tmp_path) as sim:
        sim.add_scanner("till-1", suffix="TAB", prefix="#")
        sim.add_em4100("rfid-1", variant="id12la")
        sim.add_uhf("uhf-1")
        sim.add_door("door-1")
        sim.add_beacons("ble-1", ibeacon_uuids=[uuid.uuid4()], eddystone_namespaces=["ab" * 10])
        await sim.start()
        devices = TA.validate_python(tomllib.loads(sim.config_toml())["devices"])
        assert [d.kind for d in devices] == [
            "serial_scanner",
            "em4100",
            "uhf",
            "door_counter",
            "ble_beacon",
        ]
        for name, path in sim.device_ports().items():
            target = os.readlink(path)
            assert target.startswith("/dev/pts/"), name
        sim.unplug("till-1")
        assert not _lexists(sim.device_ports()["till-1"])
        sim.scan("till-1", "1")  # dropped while unplugged, not an error
        assert sim.device("till-1").dropped_writes == 1
        sim.replug("till-1")
        assert os.readlink(sim.device_ports()["till-1"]).startswith("/dev/pts/")
        assert sim.device("till-1").plugged
    assert not _lexists(tmp_path / "till-1")  # cleaned up


async def test_first_failure_warns_repeats_debug(tmp_path: Path) -> None:
    settings = TA.validate_python(
        [
            {
                "kind": "serial_scanner",
                "name": "ghost",
                "port": str(tmp_path / "absent"),
                "reconnect_initial_s": 0.02,
                "reconnect_max_s": 0.05,
            }
        ]
    )[0]
    events: list[DeviceEvent] = []
    reader = open_reader(settings, events.append)
    with capture_logs() as logs:
        task = asyncio.create_task(reader.run(), name="driver[ghost].run")
        await asyncio.sleep(0.4)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    levels = [e["log_level"] for e in logs if e["event"] == "device.failed"]
    assert len(levels) >= 3
    assert levels[0] == "warning"
    assert set(levels[1:]) == {"debug"}
    assert len(events) == 1  # one state change: disconnected with the reason
    assert reader.status.state == "disconnected"


def _read(path: Path) -> str:
    """Sync file helpers: ASYNC240 forbids path I/O inside coroutines (tiny local files)."""
    return path.read_text() if path.exists() else ""


async def test_simulator_cli_background_demo(tmp_path: Path) -> None:
    cfg = tmp_path / "devices.toml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.simulator",
        "--dir",
        str(tmp_path / "dev"),
        "--config-out",
        str(cfg),
        "--interval",
        "0.1",
        "--codes",
        "036000291452",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (text := _read(cfg)):
            assert proc.returncode is None
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        devices = TA.validate_python(tomllib.loads(text)["devices"])
        till = next(d for d in devices if d.kind == "serial_scanner")
        events: list[DeviceEvent] = []
        task = asyncio.create_task(open_reader(till, events.append).run(), name="driver[t].run")
        while not any(isinstance(e, ScanEvent) for e in events):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert next(e for e in events if isinstance(e, ScanEvent)).code == "036000291452"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert not _lexists(tmp_path / "dev" / "till-1")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
