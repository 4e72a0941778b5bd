"""The real agent process for benchmarks: its configuration with the demo devices, spawned
under a systemd-style ``NOTIFY_SOCKET``, and sampled from ``/proc`` (RSS, CPU to the ns).

Used by :mod:`bench.footprint`; one job: run and watch ``python -m edge_agent ... run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.common import MIB, proc_cpu_seconds, proc_rss_bytes
from drivers.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
STORE = "S001"

ROUTING = {"till-1": {"mode": "sale", "terminal": "T1"},
           "backroom": {"mode": "receive", "terminal": "BR"},
           "door-main": {"role": "door"},
           "entrance-rfid": {"role": "presence"}}


# --------------------------------------------------------------------------- config
def agent_config(work: Path, db: Path, mqtt_url: str, sim: Simulator) -> Path:
    devices = []
    for entry in sim.config_entries():
        routed = {**entry, **ROUTING.get(str(entry["name"]), {})}
        devices.append("[[devices]]\n" + "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in routed.items()))
    text = (
        f'[store]\nid = "{STORE}"\ntimezone = "UTC"\nopening_hours = ["00:00", "23:59"]\n\n'
        f'[database]\npath = {json.dumps(str(db))}\nmin_free_bytes = 0\n\n'
        f'[mqtt]\nurl = "{mqtt_url}"\npassword_credential = ""\n\n'
        '[central]\ntoken_credential = ""\n\n'
        f'[api]\nsocket = {json.dumps(str(work / "api.sock"))}\n\n'
        '[logging]\nlevel = "warning"\nformat = "json"\n\n' + "\n".join(devices)
    )
    path = work / "agent.toml"
    path.write_text(text)
    path.chmod(0o640)
    return path


# --------------------------------------------------------------------------- processes
SPAWN_ENV: dict[str, str] = {}
"""Set by :func:`_run`: the bytecode cache every spawned process shares."""


def installed_env(work: Path) -> dict[str, str]:
    """Bytecode written and read as an installed package's is (see the module docstring)."""
    return {"PYTHONPYCACHEPREFIX": str(work / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}


class Notified:
    """A process spawned under our own NOTIFY_SOCKET; ``ready_s`` once READY=1 arrives."""

    def __init__(self, work: Path, argv: list[str], env: dict[str, str] | None = None,
                 log_name: str = "agent.log") -> None:
        self.path = work / f"notify-{os.getpid()}-{time.monotonic_ns()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        full_env = {**os.environ, **SPAWN_ENV, **(env or {}), "NOTIFY_SOCKET": str(self.path)}
        for key in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
            full_env.pop(key, None)
        self.log = (work / log_name).open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=full_env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.ready_s: float | None = None
        self.ready_cpu_s: float | None = None

    def wait_ready(self, timeout: float = 60.0) -> float:
        deadline = time.perf_counter() + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"no READY=1 (exit code {self.proc.poll()}); "
                                   f"see {self.log.name}")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in data.split(b"\n"):
                self.ready_s = time.perf_counter() - self.started
                # CPU spent to get there: on a loaded machine wall time inflates, this not
                with contextlib.suppress(OSError):
                    self.ready_cpu_s = proc_cpu_seconds(self.proc.pid)
                return self.ready_s

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM, then SIGKILL after ``timeout``; seconds to a clean exit (None if killed)."""
        try:
            if self.proc.poll() is None:
                begun = time.perf_counter()
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                    return time.perf_counter() - begun
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            return None
        finally:
            self.sock.close()
            self.path.unlink(missing_ok=True)
            self.log.close()


def agent_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "edge_agent", "--config", str(config), "run"]


def open_ptys(pid: int) -> int:
    """How many pseudo-terminals (the simulated devices) the process holds open."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("/dev/pts/")
    return count


def cpu_ns(pid: int) -> float:
    """CPU seconds of every thread of ``pid``, to the nanosecond (``schedstat``); the
    clock-tick figure of ``/proc/<pid>/stat`` (10 ms) is too coarse for 0.3 % of 15 s."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return proc_cpu_seconds(pid)
    # threads that ended are in the process's stat, not in task/: take the larger
    return max(total / 1e9, proc_cpu_seconds(pid))


async def sample(pid: int, seconds: float, every: float = 1.0) -> dict[str, float]:
    """RSS samples and CPU share of a live process over ``seconds``."""
    cpu0, wall0 = cpu_ns(pid), time.perf_counter()
    rss: list[int] = [proc_rss_bytes(pid)]
    while time.perf_counter() - wall0 < seconds:
        await asyncio.sleep(min(every, max(0.0, seconds - (time.perf_counter() - wall0))))
        rss.append(proc_rss_bytes(pid))
    wall = time.perf_counter() - wall0
    cpu = cpu_ns(pid) - cpu0
    ttys = open_ptys(pid)
    return {"rss_mib": rss[-1] / MIB, "rss_max_mib": max(rss) / MIB,
            "hwm_mib": proc_rss_bytes(pid, "VmHWM") / MIB,
            "cpu_pct": 100.0 * cpu / wall, "cpu_s": cpu, "wall_s": wall,
            "device_ptys_open": ttys}


def listen_port_later() -> int:
    """A free TCP port outside the ephemeral range, for a broker that starts later: a port
    from ``free_port()`` (the ephemeral range) was taken meanwhile by some process's
    outgoing connection on this shared machine, and mosquitto could not bind it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(10_001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def outbox_pending(db: Path) -> int:
    """Events not yet acked by central, read from the ledger file (read-only, WAL)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        row = c.execute("SELECT COALESCE(SUM(last_seq - acked_seq), 0) FROM epochs").fetchone()
    return int(row[0])


async def drained(db: Path, agent: Notified, started: float,
                  stalled_after: float = 120.0) -> float:
    """Seconds from ``started`` (perf_counter) until the ledger holds central's ack of
    every event (progress-driven: gives up only after ``stalled_after`` s without any)."""
    last, last_change = outbox_pending(db), time.perf_counter()
    while last > 0:
        if agent.proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({agent.proc.returncode}) while draining")
        if time.perf_counter() - last_change > stalled_after:
            raise RuntimeError(f"the drain stalled at {last} pending events")
        await asyncio.sleep(0.5)
        now = await asyncio.to_thread(outbox_pending, db)
        if now != last:
            last, last_change = now, time.perf_counter()
    return time.perf_counter() - started
