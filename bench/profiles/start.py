"""Profile of the start (issue 18: start → READY=1 ≤ 0.5 s of CPU).

One job: split the agent's CPU to READY=1 into its imports and the rest, in one run:
``python -X importtime -m edge_agent --config X run`` with the demo devices, summarised
(top cumulative imports, self time by package); the CPU of a process that only imports the
same top-level modules; the CPU to READY=1 of the real agent (no importtime, median of 3).
The difference is the CPU from the end of the imports to READY=1 (config, ledger open and
``quick_check``, the app, the devices, the first MQTT connect).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from bench.agentproc import SPAWN_ENV, Notified, agent_argv, installed_env
from bench.common import scratch_dir
from bench.profiles import demo_store, write_profile

ROOT = Path(__file__).resolve().parents[2]
CPU_OF_IMPORTS = ("import resource\nr = resource.getrusage(resource.RUSAGE_SELF)\n"
                  "print(r.ru_utime + r.ru_stime)\n")


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) of each ``import time:`` line."""
    out = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        out.append((int(self_us), int(cumulative), depth, name.strip()))
    return out


def summary(entries: list[tuple[int, int, int, str]]) -> list[str]:
    top_level = [e for e in entries if e[2] == 0]
    total = sum(e[1] for e in top_level)
    out = [f"1. python -X importtime of `edge-agent run` up to READY=1: {len(entries)} modules,"
           f" {total / 1e6:.3f} s cumulative (importtime itself inflates it)", "",
           "   top 20 top-level imports by cumulative time:"]
    for _self, cum, _, name in sorted(top_level, key=lambda e: -e[1])[:20]:
        out.append(f"   {cum / 1000:8.1f} ms  {cum / total:5.1%}  {name}")
    by_package: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for self_us, _, _, name in entries:
        by_package[name.split(".")[0]] += self_us
        count[name.split(".")[0]] += 1
    out += ["", "   self time by top-level package (top 20; modules):"]
    for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:20]:
        out.append(f"   {us / 1000:8.1f} ms  {us / total:5.1%}  {name} ({count[name]})")
    out += ["", "   top 15 modules by self time (a module's body: class definitions, pydantic "
            "schemas, tables):"]
    for self_us, _, _, name in sorted(entries, key=lambda e: -e[0])[:15]:
        out.append(f"   {self_us / 1000:8.1f} ms  {name}")
    return [*out, *chains(entries)]


NOT_FOR_RUN = ("rich", "pygments", "click", "typer", "pygal", "opentelemetry", "greenlet",
               "sqlalchemy", "jinja2", "httpx", "biip")


def chains(entries: list[tuple[int, int, int, str]]) -> list[str]:
    """Who pulled in the packages an idle store has no use for (first import of each):
    importtime prints a module's children before it, so its parents follow it."""
    out = ["", "   packages the run path imports that serve no idle store (who pulled them in):"]
    seen: set[str] = set()
    for i, (_, _cum, depth, name) in enumerate(entries):
        package = name.split(".")[0]
        if package not in NOT_FOR_RUN or package in seen:
            continue
        seen.add(package)
        chain, level = [name], depth
        for _s, _c, d, parent in entries[i + 1:]:
            if d < level:
                chain.append(parent)
                level = d
            if level == 0:
                break
        total = sum(e[0] for e in entries if e[3].split(".")[0] == package)
        out.append(f"   {package}: {total / 1000:.1f} ms self in all its modules; "
                   f"via {' <- '.join(chain)}")
    return out


async def measure(work: Path) -> tuple[list[tuple[int, int, int, str]], list[float]]:
    """The importtime lines of one start, and the CPU to READY=1 of three plain starts."""
    async with demo_store(work) as config:
        argv = agent_argv(config)
        warm = Notified(work, argv)  # compiles the bytecode, as a wheel install does
        try:
            await asyncio.to_thread(warm.wait_ready)
        finally:
            warm.stop()
        log = work / "importtime.log"
        traced = Notified(work, [argv[0], "-X", "importtime", *argv[1:]], log_name=log.name)
        try:
            await asyncio.to_thread(traced.wait_ready)
        finally:
            traced.stop()
        cpus = []
        for _ in range(3):
            agent = Notified(work, argv)
            try:
                await asyncio.to_thread(agent.wait_ready)
                if agent.ready_cpu_s is not None:
                    cpus.append(agent.ready_cpu_s)
            finally:
                agent.stop()
    return parse_importtime(log.read_text()), cpus


def cpu_of(code: str, runs: int) -> float:
    """Median CPU seconds of ``python -c code`` (which prints its own), the first run (it
    compiles the bytecode) not counted."""
    env = {**os.environ, **SPAWN_ENV}
    seconds = []
    for _ in range(runs + 1):
        done = subprocess.run([sys.executable, "-c", code + CPU_OF_IMPORTS], env=env,
                              capture_output=True, text=True, check=True, cwd=ROOT)
        seconds.append(float(done.stdout.split()[-1]))
    return statistics.median(seconds[1:])


def split(entries: list[tuple[int, int, int, str]], cpus: list[float]) -> list[str]:
    top = sorted({e[3] for e in entries if e[2] == 0 and not e[3].startswith("_")})
    # uvicorn probes optional modules (websockets, wsproto): importtime lists those too
    imports = cpu_of("".join(f"try:\n    import {m}\nexcept ImportError:\n    pass\n"
                             for m in top), 3)
    ready = statistics.median(cpus) if cpus else float("nan")
    return [
        "", "2. CPU split (utime+stime, clock ticks of 10 ms):",
        f"   {cpu_of('', 3):.3f} s  bare interpreter (no import)",
        f"   {imports:.3f} s  a process importing only the same {len(top)} top-level modules"
        " (median of 3)",
        f"   {ready:.3f} s  the agent to READY=1 (median of 3; target ≤ 0.5 s)",
        f"   {ready - imports:.3f} s  from the end of the imports to READY=1 (config, ledger "
        "open + quick_check, the app, devices, first connect)",
    ]


def main() -> None:
    with scratch_dir("bench-profile-start-") as work:
        SPAWN_ENV.clear()
        SPAWN_ENV.update(installed_env(work))
        entries, cpus = asyncio.run(measure(work))
        body = [*summary(entries), *split(entries, cpus)]
    write_profile("start", "Start: the CPU from exec to READY=1", body)


if __name__ == "__main__":
    main()
