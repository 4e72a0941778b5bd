"""Simulated devices' pseudo-terminals: one pty per device behind a stable symlink.

Each device is a pty (``os.openpty``) whose slave is reachable through a stable
symlink ``<directory>/<name>`` -> ``/dev/pts/N``; readers open the symlink like any
serial port.  :meth:`PtyDevices.unplug` closes the master and removes the symlink
(the reader sees EIO); :meth:`PtyDevices.replug` makes a new pty behind the same
symlink, so a reconnecting reader finds it.  What the devices say is
:class:`drivers.simulator.Simulator`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from drivers.uhf import UhfFrame, UhfParser

__all__ = ["Kind", "PtyDevices", "SimDevice"]

Kind = Literal["serial_scanner", "em4100", "uhf", "door_counter", "ble_beacon"]


@dataclass
class SimDevice:
    name: str
    kind: Kind
    link: Path
    options: dict[str, object] = field(default_factory=dict)
    master: int = -1
    slave: int = -1
    tags: dict[str, bytes] = field(default_factory=dict)  # em4100 id / uhf epc hex -> payload
    beacons: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # id -> (rssi, adv)
    polling: bool = False
    dropped_writes: int = 0
    commands: list[UhfFrame] = field(default_factory=list)
    parser: UhfParser = field(default_factory=UhfParser)

    @property
    def plugged(self) -> bool:
        return self.master >= 0


class PtyDevices:
    """Named devices, each a pty behind a stable symlink; plug, unplug, write raw bytes.

    A subclass speaks the devices' formats: it sends periodically in :meth:`_ticker`
    and may answer what a reader writes (:meth:`_plugged` is called with each new pty).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._devices: dict[str, SimDevice] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Create the ptys and start the periodic senders (idempotent)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True)
        for dev in self._devices.values():
            self._plug(dev)
        self._tasks.append(asyncio.create_task(self._ticker(), name="simulator.tick"))

    def stop(self) -> None:
        """Close every pty and remove the symlinks (tasks are cancelled)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for dev in self._devices.values():
            self._unplug(dev)
        self._loop = None

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        self.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- devices ----------------------------------------------------------------

    def _add(self, name: str, kind: Kind, **options: object) -> SimDevice:
        if name in self._devices:
            raise ValueError(f"device {name!r} already exists")
        dev = SimDevice(name=name, kind=kind, link=self.directory / name, options=options)
        self._devices[name] = dev
        if self._loop is not None:
            self._plug(dev)
        return dev

    def device_ports(self) -> dict[str, str]:
        """name -> stable symlink path of its pty."""
        return {name: str(dev.link) for name, dev in self._devices.items()}

    def device(self, name: str) -> SimDevice:
        return self._devices[name]

    # -- pty plumbing -------------------------------------------------------------

    def _plug(self, dev: SimDevice) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        dev.master, dev.slave = master, slave
        dev.parser = UhfParser()
        dev.polling = False
        tmp = dev.link.with_name(f".{dev.link.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(dev.link)
        self._plugged(dev)

    def _unplug(self, dev: SimDevice) -> None:
        if not dev.plugged:
            return
        if dev.kind == "uhf" and self._loop is not None:
            self._loop.remove_reader(dev.master)
        with contextlib.suppress(FileNotFoundError):
            dev.link.unlink()
        os.close(dev.master)
        os.close(dev.slave)
        dev.master = dev.slave = -1
        dev.polling = False

    def unplug(self, name: str) -> None:
        """Pull the cable: close the pty master and remove the symlink."""
        self._unplug(self._devices[name])

    def replug(self, name: str) -> None:
        """Plug it back: a fresh pty behind the same symlink path."""
        dev = self._devices[name]
        if not dev.plugged:
            self._plug(dev)

    def write(self, name: str, data: bytes) -> None:
        """Raw bytes from the device (dropped, and counted, if unplugged or full)."""
        dev = self._devices[name]
        if not dev.plugged:
            dev.dropped_writes += 1
            return
        try:
            n = os.write(dev.master, data)
        except (BlockingIOError, OSError):
            dev.dropped_writes += 1
            return
        if n < len(data):
            dev.dropped_writes += 1

    def _plugged(self, dev: SimDevice) -> None:
        """Called with each new pty (a device that answers commands watches it here)."""

    async def _ticker(self) -> None:
        """The devices' periodic sends, run from :meth:`start` until :meth:`stop`."""
