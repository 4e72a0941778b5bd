"""The agent as a store PC feels it: memory, CPU when idle, start-up time, a big backlog.

Run: ``.venv/bin/python -m bench.footprint [--quick]``.

The real agent process (``python -m edge_agent --config X run``) with the demo devices
(two serial scanners, a door counter, an EM4100 reader) on simulator ptys, under a
systemd-style ``NOTIFY_SOCKET`` (a real ``AF_UNIX`` datagram socket made here):

- **ready**: wall time from just before the process is spawned to its ``READY=1``
  (median of several starts; no target: wall time follows the machine's load) and the
  CPU time it took (target ≤ 0.5 s). Ceiling: a bare interpreter that sends ``READY=1``
  at once, spawned the same way;
- **idle**: VmRSS (``/proc/<pid>/status``) and CPU (``utime+stime`` of
  ``/proc/<pid>/stat``) over 60 s (15 s quick) of an online, idle store with its devices
  connected (targets ≤ 40 MiB, ≤ 0.3 % of a core). Ceiling for RSS: the bare interpreter;
- **backlog**: a 1,000,000-event (100k quick) offline backlog built with the ledger's
  batched ops, then the agent started with no broker reachable; its RSS must stay
  bounded (the backlog lives on disk): at most 5 MiB above the idle RSS; its idle CPU
  offline (the reachability probe runs) ≤ 0.3 %. Then mosquitto and the reference
  central come up on the port the agent is configured with: the same process drains the
  backlog into central (the ledger file says when: every event acked), and its RSS after
  the drain must be within 5 MiB of the idle RSS;
- **budget**: start and idle again inside one core at 25 % (:mod:`bench.cpubudget`:
  cgroups, or ``systemd-run``, or the reason why not), with the bare interpreter's start
  under the same budget.

CPU over an idle window is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds): the
10 ms clock ticks of ``/proc/<pid>/stat`` are too coarse for 0.3 % of 15 s.

Every process runs with its bytecode compiled once beforehand (an unmeasured warm-up start),
as after ``pip install`` of a wheel, which compiles at install time: a start then measures the
agent, not the compiler. This machine sets ``PYTHONDONTWRITEBYTECODE`` and the checkout is
not an install, so the cache goes to the scratch directory (``PYTHONPYCACHEPREFIX``); without
it every start compiled all our modules (~0.25 s of CPU).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.agentproc import (
    SPAWN_ENV,
    STORE,
    Notified,
    agent_argv,
    agent_config,
    drained,
    installed_env,
    listen_port_later,
    sample,
)
from bench.common import (
    MIB,
    build_backlog,
    print_rows,
    proc_rss_bytes,
    running_broker,
    scratch_dir,
)
from bench.cpubudget import cpu_budget
from bench.footprint_rows import BUDGET_SHARE, STACK, rows
from bench.sync import reference_central
from drivers.simulator import Simulator
from tests.helpers.mosquitto import Broker

BARE_READY = (
    "import os, socket, time\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1\\nMAINPID=%d' % os.getpid(), os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(float(os.environ.get('BENCH_LINGER', '0')))\n"
)

STACK_READY = "import " + ", ".join(STACK) + "\n" + BARE_READY

def _sizes(quick: bool, tiny: bool) -> dict[str, Any]:
    if tiny:
        return {"idle_s": 2.0, "starts": 1, "backlog": 2_000, "settle_s": 1.0}
    if quick:
        return {"idle_s": 15.0, "starts": 3, "backlog": 100_000, "settle_s": 3.0}
    return {"idle_s": 60.0, "starts": 5, "backlog": 1_000_000, "settle_s": 5.0}


async def bare_ceiling(work: Path, starts: int, script: str = BARE_READY
                       ) -> dict[str, float | None]:
    """The floor: an interpreter that only says READY=1 (spawn cost and bare RSS); with
    ``STACK_READY``, one that imports the agent's libraries first."""
    times, rss, cpus = [], [], []
    for _ in range(starts):
        bare = Notified(work, [sys.executable, "-c", script], {"BENCH_LINGER": "2"},
                        "bare.log")
        try:
            times.append(await asyncio.to_thread(bare.wait_ready, 20))
            if bare.ready_cpu_s is not None:
                cpus.append(bare.ready_cpu_s)
            await asyncio.sleep(0.3)
            rss.append(proc_rss_bytes(bare.proc.pid) / MIB)
        finally:
            bare.stop()
    return {"ready_s": statistics.median(times), "rss_mib": statistics.median(rss),
            "ready_cpu_s": statistics.median(cpus) if cpus else None}


# --------------------------------------------------------------------------- phases
async def idle_phase(work: Path, sim: Simulator, sizes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running_broker(work / "broker") as broker:
        config = agent_config(work, work / "idle" / "ledger.db", broker.url, sim)
        warm = Notified(work, agent_argv(config))  # compiles the bytecode: not measured
        try:
            await asyncio.to_thread(warm.wait_ready)
        finally:
            warm.stop()
        readies, cpus, stops = [], [], []
        for i in range(sizes["starts"]):
            agent = Notified(work, agent_argv(config))
            try:
                readies.append(await asyncio.to_thread(agent.wait_ready))
                if agent.ready_cpu_s is not None:
                    cpus.append(agent.ready_cpu_s)
                if i == 0:
                    await asyncio.sleep(sizes["settle_s"])  # connects, opens the devices
                    out["idle"] = await sample(agent.proc.pid, sizes["idle_s"])
            finally:
                stops.append(agent.stop())
        out["ready_s"] = statistics.median(readies)
        out["ready_max_s"] = max(readies)
        out["ready_samples"] = readies
        out["ready_cpu_s"] = statistics.median(cpus) if cpus else None
        clean = [s for s in stops if s is not None]
        out["stop_s_max"] = max(clean) if clean else None
        out["unclean_stops"] = len(stops) - len(clean)
    return out


async def budget_phase(work: Path, sim: Simulator, sizes: dict[str, Any]) -> dict[str, Any]:
    """The same start and idle, inside a budget of one core at 25 % (bench.cpubudget)."""
    with cpu_budget(f"bench-footprint-{os.getpid()}", BUDGET_SHARE) as budget:
        if budget.how is None:
            return {"how": None, "why_not": budget.why_not}
        with running_broker(work / "broker-budget") as broker:
            config = agent_config(work, work / "budget" / "ledger.db", broker.url, sim)
            readies, cpus = [], []
            for i in range(sizes["starts"]):
                agent = Notified(work, budget.wrap(agent_argv(config)))
                try:
                    readies.append(await asyncio.to_thread(agent.wait_ready))
                    if agent.ready_cpu_s is not None:
                        cpus.append(agent.ready_cpu_s)
                    if i == 0:
                        await asyncio.sleep(sizes["settle_s"])
                        before = budget.throttled()
                        idle = await sample(agent.proc.pid, sizes["idle_s"])
                        during = budget.throttled()
                finally:
                    agent.stop()
            ready = statistics.median(readies)
            ready_cpu = statistics.median(cpus) if cpus else None
        bare = Notified(work, budget.wrap([sys.executable, "-c", BARE_READY]),
                        {"BENCH_LINGER": "0.5"}, "bare.log")
        try:
            bare_ready = await asyncio.to_thread(bare.wait_ready, 20)
        finally:
            bare.stop()
        stack = Notified(work, budget.wrap([sys.executable, "-c", STACK_READY]),
                         {"BENCH_LINGER": "0.5"}, "bare.log")
        try:
            stack_ready = await asyncio.to_thread(stack.wait_ready, 60)
            stack_cpu = stack.ready_cpu_s
        finally:
            stack.stop()
    return {"how": budget.how, "ready_s": ready, "ready_cpu_s": ready_cpu,
            "bare_ready_s": bare_ready, "stack_ready_s": stack_ready,
            "stack_ready_cpu_s": stack_cpu, "idle": idle,
            "idle_throttled_periods": during.get("nr_throttled", 0)
            - before.get("nr_throttled", 0),
            "idle_periods": during.get("nr_periods", 0) - before.get("nr_periods", 0)}


async def backlog_phase(work: Path, sim: Simulator, sizes: dict[str, Any]) -> dict[str, Any]:
    """Offline with a backlog (RSS, idle CPU while it probes for the broker), then the
    broker and the reference central come up on the agent's port: the same process drains
    the backlog into central, and its RSS after the drain is compared with idle's."""
    n, settle_s = sizes["backlog"], sizes["settle_s"]
    db = work / "backlog" / "ledger.db"
    rate = await asyncio.to_thread(build_backlog, db, n, STORE)
    on_disk = sum(p.stat().st_size for p in db.parent.glob("ledger.db*"))
    port = listen_port_later()  # nothing listens there yet: the agent starts offline
    config = agent_config(work, db, f"mqtt://127.0.0.1:{port}", sim)
    agent = Notified(work, agent_argv(config))
    try:
        ready = await asyncio.to_thread(agent.wait_ready)
        ready_cpu = agent.ready_cpu_s
        await asyncio.sleep(settle_s)
        offline = await sample(agent.proc.pid, sizes["idle_s"])
        broker = Broker(workdir=work / "broker-back", port=port)
        (work / "broker-back").mkdir(parents=True, exist_ok=True)
        (work / "central").mkdir(parents=True, exist_ok=True)
        back = time.perf_counter()
        broker.start()
        try:
            with reference_central(work / "central", port):
                drain_s = await drained(db, agent, back)
                await asyncio.sleep(settle_s)
                after = await sample(agent.proc.pid, sizes["idle_s"])
        finally:
            broker.stop()
    finally:
        agent.stop()
    return {"events": n, "build_events_per_s": rate, "db_mib": on_disk / MIB,
            "ready_s": ready, "ready_cpu_s": ready_cpu, **offline,
            "drain_s": drain_s, "drain_events_per_s": n / drain_s if drain_s else None,
            "after_drain": after}


async def start_demo_devices(sim: Simulator) -> None:
    """The demo store's four devices (two scanners, a door counter, an EM4100 reader)."""
    sim.add_scanner("till-1", suffix="CR")
    sim.add_scanner("backroom", suffix="CRLF")
    sim.add_door("door-main")
    sim.add_em4100("entrance-rfid")
    await sim.start()


async def _run(quick: bool, tiny: bool) -> dict[str, Any]:
    sizes = _sizes(quick, tiny)
    with scratch_dir("bench-footprint-") as work:
        SPAWN_ENV.clear()
        SPAWN_ENV.update(installed_env(work))
        async with Simulator(work / "dev") as sim:
            await start_demo_devices(sim)
            out: dict[str, Any] = await idle_phase(work, sim, sizes)
            out["bare"] = await bare_ceiling(work, sizes["starts"])
            out["stack"] = await bare_ceiling(work, sizes["starts"], STACK_READY)
            out["backlog"] = await backlog_phase(work, sim, sizes)
            out["budget"] = await budget_phase(work, sim, sizes)
    out["idle_seconds"] = sizes["idle_s"]
    return out


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick, tiny))


def main() -> None:
    figures = run(quick="--quick" in sys.argv, tiny="--tiny" in sys.argv)
    print_rows("agent footprint", rows(figures))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
