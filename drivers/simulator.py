"""Device simulator: pseudo-terminals speaking the real wire formats.

Each simulated device is a pty (``os.openpty``) whose slave is reachable through
a stable symlink ``<directory>/<name>`` -> ``/dev/pts/N``.  Readers open the
symlink like any serial port.  :meth:`Simulator.unplug` closes the master and
removes the symlink (the reader sees EIO); :meth:`Simulator.replug` makes a new
pty behind the same symlink, so a reconnecting reader finds it.

Library use (tests, demo)::

    async with Simulator(tmp_path) as sim:
        sim.add_scanner("till-1", suffix="CR")
        sim.add_em4100("rfid-1")
        sim.add_uhf("uhf-1")
        sim.add_door("door-1")
        sim.add_beacons("ble-1", ibeacon_uuids=[UUID(...)])
        await sim.start()          # devices may also be added after start()
        sim.scan("till-1", "5901234123457", aim="]E0")
        sim.tag_present("rfid-1", "0A1B2C3D4E"); ...; sim.tag_gone("rfid-1", "0A1B2C3D4E")
        sim.uhf_tag_present("uhf-1", epc_bytes)   # answered while the reader polls
        sim.door("door-1", "in", 2)
        sim.ibeacon("ble-1", uuid, 1, 2, rssi=-60)
        sim.corrupt("till-1"); sim.unplug("rfid-1"); sim.replug("rfid-1")
        print(sim.config_toml())

Command line (background demo)::

    python -m drivers.simulator --dir /tmp/edge-sim --config-out /tmp/edge-sim/devices.toml \\
        [--codes 5901234123457 4006381333931 ...] [--interval 2] [--no-demo]

writes ``[[devices]]`` entries pointing at its ptys and keeps them alive (running
a demo script unless ``--no-demo``) until SIGINT/SIGTERM.

BLE feed format: see :mod:`drivers.ble` (``<rssi> <adv-hex>\\n`` lines).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Literal

from drivers.ble import encode_eddystone_uid, encode_ibeacon
from drivers.em4100 import encode_em4100
from drivers.epc import encode_sgtin96
from drivers.scanner import SUFFIXES
from drivers.sim_ptys import PtyDevices, SimDevice
from drivers.uhf import (
    CMD_ERROR,
    CMD_INVENTORY,
    CMD_MULTI_POLL,
    CMD_STOP,
    ERR_NO_TAG,
    TYPE_COMMAND,
    TYPE_RESPONSE,
    UhfFrame,
    encode_frame,
    encode_tag_notice,
)

__all__ = ["DEMO_CODES", "Simulator"]

DEMO_CODES = ("5901234123457", "4006381333931", "036000291452", "96385074")


class Simulator(PtyDevices):
    """Simulated scanners, RFID readers, door counters and beacons speaking their real bytes."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        em4100_repeat_s: float = 0.1,
        uhf_round_s: float = 0.1,
        ble_interval_s: float = 0.2,
    ) -> None:
        super().__init__(directory)
        self.em4100_repeat_s = em4100_repeat_s
        self.uhf_round_s = uhf_round_s
        self.ble_interval_s = ble_interval_s

    # -- devices ----------------------------------------------------------------

    def add_scanner(
        self,
        name: str,
        *,
        suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR",
        prefix: str = "",
        stx_etx: bool = False,
    ) -> None:
        self._add(name, "serial_scanner", suffix=suffix, prefix=prefix, stx_etx=stx_etx)

    def add_em4100(self, name: str, *, variant: Literal["rdm6300", "id12la"] = "rdm6300") -> None:
        self._add(name, "em4100", variant=variant)

    def add_uhf(self, name: str) -> None:
        self._add(name, "uhf")

    def add_door(self, name: str) -> None:
        self._add(name, "door_counter")

    def add_beacons(
        self,
        name: str,
        *,
        ibeacon_uuids: Sequence[uuid.UUID] = (),
        eddystone_namespaces: Sequence[str] = (),
    ) -> None:
        self._add(
            name,
            "ble_beacon",
            ibeacon_uuids=[str(u) for u in ibeacon_uuids],
            eddystone_namespaces=list(eddystone_namespaces),
        )

    def _plugged(self, dev: SimDevice) -> None:
        if dev.kind == "uhf" and self._loop is not None:
            self._loop.add_reader(dev.master, self._uhf_readable, dev)

    # -- scanners ----------------------------------------------------------------

    def _frame_scan(self, dev: SimDevice, text: str) -> bytes:
        body = (str(dev.options.get("prefix", "")) + text).encode("latin-1")
        if dev.options.get("stx_etx"):
            return b"\x02" + body + b"\x03"
        return body + SUFFIXES[str(dev.options.get("suffix", "CR"))]

    def scan(self, name: str, code: str, *, aim: str | None = None) -> None:
        """A barcode scan (``aim`` e.g. ``"]E0"`` is sent before the code)."""
        dev = self._devices[name]
        self.write(name, self._frame_scan(dev, (aim or "") + code))

    def swipe(self, name: str, track: str) -> None:
        """A card swipe typed by a keyboard-wedge reader (``%B...?`` or ``;...?``)."""
        dev = self._devices[name]
        self.write(name, self._frame_scan(dev, track))

    # -- RFID ------------------------------------------------------------------------

    def tag_present(self, name: str, tag_id: str) -> None:
        """EM4100: the reader repeats the frame every ``em4100_repeat_s`` until tag_gone."""
        dev = self._devices[name]
        if dev.kind != "em4100":
            raise ValueError(f"{name} is not an em4100 reader")
        variant: Literal["rdm6300", "id12la"] = (
            "id12la" if dev.options.get("variant") == "id12la" else "rdm6300"
        )
        frame = encode_em4100(tag_id, variant)
        dev.tags[tag_id.upper()] = frame
        self.write(name, frame)

    def tag_gone(self, name: str, tag_id: str) -> None:
        self._devices[name].tags.pop(tag_id.upper(), None)

    def uhf_tag_present(self, name: str, epc: bytes, rssi: int = -60) -> None:
        """UHF: the tag answers every inventory round while the reader polls."""
        dev = self._devices[name]
        if dev.kind != "uhf":
            raise ValueError(f"{name} is not a UHF reader")
        dev.tags[epc.hex().upper()] = encode_tag_notice(epc, rssi)

    def uhf_tag_gone(self, name: str, epc: bytes) -> None:
        self._devices[name].tags.pop(epc.hex().upper(), None)

    def _uhf_readable(self, dev: SimDevice) -> None:
        try:
            data = os.read(dev.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # slave side closed and nobody holds it: nothing to answer
        for item in dev.parser.feed(data):
            if isinstance(item, UhfFrame) and item.type == TYPE_COMMAND:
                dev.commands.append(item)
                del dev.commands[:-100]
                self._uhf_command(dev, item)

    def _uhf_command(self, dev: SimDevice, cmd: UhfFrame) -> None:
        if cmd.cmd == CMD_MULTI_POLL:
            dev.polling = True
        elif cmd.cmd == CMD_STOP:
            dev.polling = False
            self.write(dev.name, encode_frame(TYPE_RESPONSE, CMD_STOP, b"\x00"))
        elif cmd.cmd == CMD_INVENTORY:
            self._uhf_round(dev)
        else:
            self.write(dev.name, encode_frame(TYPE_RESPONSE, CMD_ERROR, b"\x17"))

    def _uhf_round(self, dev: SimDevice) -> None:
        if dev.tags:
            self.write(dev.name, b"".join(dev.tags.values()))
        else:
            self.write(dev.name, encode_frame(TYPE_RESPONSE, CMD_ERROR, bytes((ERR_NO_TAG,))))

    # -- door counters, beacons ---------------------------------------------------------

    def door(self, name: str, direction: Literal["in", "out"], count: int = 1) -> None:
        self.write(name, f"{direction.upper()} {count}\r\n".encode("ascii"))

    def advert(self, name: str, beacon_id: str, adv: bytes, rssi: int = -60) -> None:
        """Keep advertising ``adv`` (raw advertising data) until :meth:`beacon_gone`."""
        dev = self._devices[name]
        dev.beacons[beacon_id] = (rssi, adv)
        self.write(name, f"{rssi} {adv.hex()}\n".encode("ascii"))

    def ibeacon(
        self, name: str, u: uuid.UUID, major: int, minor: int, *, rssi: int = -60, tx: int = -59
    ) -> str:
        bid = f"{u}:{major}:{minor}"
        self.advert(name, bid, encode_ibeacon(u, major, minor, tx), rssi)
        return bid

    def eddystone(
        self, name: str, namespace: bytes, instance: bytes, *, rssi: int = -60, tx: int = -20
    ) -> str:
        bid = f"{namespace.hex()}:{instance.hex()}"
        self.advert(name, bid, encode_eddystone_uid(namespace, instance, tx), rssi)
        return bid

    def beacon_gone(self, name: str, beacon_id: str) -> None:
        self._devices[name].beacons.pop(beacon_id, None)

    def corrupt(self, name: str, data: bytes | None = None) -> None:
        """Line noise: random bytes, or a frame with a broken checksum for RFID."""
        dev = self._devices[name]
        if data is None:
            if dev.kind == "em4100":
                data = b"\x020A1B2C3D4EFF\x03"  # checksum should be 4E
            elif dev.kind == "uhf":
                data = bytes.fromhex("bb0222000100ff7e")
            else:
                data = bytes(random.getrandbits(8) for _ in range(16)).replace(b"\r", b"")
        self.write(name, data)

    # -- periodic senders ------------------------------------------------------------------

    async def _ticker(self) -> None:
        step = min(self.em4100_repeat_s, self.uhf_round_s, self.ble_interval_s)
        loop = asyncio.get_running_loop()
        due = {"em": 0.0, "uhf": 0.0, "ble": 0.0}
        while True:
            now = loop.time()
            for dev in self._devices.values():
                if not dev.plugged:
                    continue
                if dev.kind == "em4100" and dev.tags and now >= due["em"]:
                    self.write(dev.name, b"".join(dev.tags.values()))
                elif dev.kind == "uhf" and dev.polling and now >= due["uhf"]:
                    self._uhf_round(dev)
                elif dev.kind == "ble_beacon" and dev.beacons and now >= due["ble"]:
                    lines = "".join(f"{r} {a.hex()}\n" for r, a in dev.beacons.values())
                    self.write(dev.name, lines.encode("ascii"))
            for key, period in (
                ("em", self.em4100_repeat_s),
                ("uhf", self.uhf_round_s),
                ("ble", self.ble_interval_s),
            ):
                if now >= due[key]:
                    due[key] = now + period
            await asyncio.sleep(step)

    # -- config -------------------------------------------------------------------------------

    def config_entries(self) -> list[dict[str, object]]:
        """Device settings dicts (``drivers.config`` shapes) pointing at the ptys."""
        out: list[dict[str, object]] = []
        for dev in self._devices.values():
            entry: dict[str, object] = {"name": dev.name, "kind": dev.kind}
            port = str(dev.link)
            if dev.kind == "serial_scanner":
                entry.update(port=port, **dev.options)
            elif dev.kind == "em4100":
                entry.update(port=port, variant=dev.options["variant"])
            elif dev.kind in ("uhf", "door_counter"):
                entry["port"] = port
            elif dev.kind == "ble_beacon":
                entry["source"] = f"sim://{port}"
                entry["ibeacon_uuids"] = dev.options["ibeacon_uuids"]
                entry["eddystone_namespaces"] = dev.options["eddystone_namespaces"]
            out.append(entry)
        return out

    def config_toml(self, table: str = "devices") -> str:
        """TOML ``[[devices]]`` snippet of :meth:`config_entries`."""
        chunks = []
        for entry in self.config_entries():
            lines = [f"[[{table}]]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
            chunks.append("\n".join(lines))
        return "\n\n".join(chunks) + "\n"

    # -- demo ------------------------------------------------------------------------------------

    async def run_demo_script(
        self,
        codes: Iterable[str] = DEMO_CODES,
        *,
        interval: float = 2.0,
        rounds: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Drive every device with plausible store activity (forever if ``rounds`` is None)."""
        rng = rng or random.Random()  # noqa: S311 -- demo traffic, not security
        code_list = list(codes) or list(DEMO_CODES)
        n = 0
        while rounds is None or n < rounds:
            n += 1
            for dev in list(self._devices.values()):
                if not dev.plugged:
                    continue
                if dev.kind == "serial_scanner":
                    self.scan(dev.name, rng.choice(code_list))
                    if n % 7 == 0:
                        self.corrupt(dev.name)
                elif dev.kind == "em4100":
                    tag = f"{rng.randrange(1 << 40):010X}"
                    self.tag_present(dev.name, tag)
                    loop = asyncio.get_running_loop()
                    loop.call_later(interval * 0.6, self.tag_gone, dev.name, tag)
                elif dev.kind == "uhf":
                    dev.tags.clear()
                    for _ in range(rng.randrange(1, 4)):
                        self.uhf_tag_present(
                            dev.name,
                            encode_sgtin96("80614141123458", rng.randrange(1 << 30), 7),
                            rssi=rng.randrange(-80, -40),
                        )
                elif dev.kind == "door_counter":
                    self.door(dev.name, rng.choice(("in", "out")), 1)
                elif dev.kind == "ble_beacon":
                    uuids = [uuid.UUID(str(u)) for u in _as_list(dev.options["ibeacon_uuids"])]
                    if uuids:
                        self.ibeacon(dev.name, uuids[0], 1, rng.randrange(1, 4))
            await asyncio.sleep(interval)


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


if __name__ == "__main__":  # ``python -m drivers.simulator``, the documented command line
    from drivers.simulator_cli import main

    main()
