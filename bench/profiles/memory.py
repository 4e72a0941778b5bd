"""Profile of the idle RSS (issue 18: ≤ 40 MiB with the demo devices connected).

One job: say where the agent's resident memory goes, in three views measured in one run:

1. the import ladder: RSS of a fresh interpreter after importing each library in turn
   (bare, +pydantic, +fastapi, +uvicorn, +aiomqtt/paho, +structlog, +orjson, +our packages);
2. the real agent after READY=1 with the demo devices on simulator ptys and a broker:
   ``/proc/<pid>/smaps`` grouped (anonymous heap, thread stacks, each shared library and
   extension module), and its threads;
3. the same agent under ``tracemalloc`` (:mod:`bench.profiles.traced`): top allocations and
   SQLite's own heap (its page caches).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.agentproc import SPAWN_ENV, Notified, agent_argv, installed_env
from bench.common import scratch_dir
from bench.profiles import demo_store, write_profile

LADDER = (
    ("bare interpreter", ""),
    ("+ pydantic", "pydantic"),
    ("+ fastapi", "fastapi"),
    ("+ uvicorn", "uvicorn"),
    ("+ aiomqtt (paho)", "aiomqtt"),
    ("+ structlog", "structlog"),
    ("+ orjson", "orjson"),
    ("+ serial_asyncio_fast, sqlite3", "serial_asyncio_fast, sqlite3"),
    ("+ our packages (edge_agent.cli + daemon, drivers, sync)",
     "edge_agent.cli.app, edge_agent.daemon, drivers, sync"),
)
RSS = ("import gc\ngc.collect()\nfor l in open('/proc/self/status'):\n"
       "    if l.startswith('VmRSS'): print(int(l.split()[1]))\n")
SETTLE_S = 3.0


def ladder(env: dict[str, str]) -> list[str]:
    out = ["1. RSS after importing each library in turn (fresh interpreter each step, bytecode",
           "   cached as after a wheel install; median of 3)", ""]
    imports: list[str] = []
    previous = None
    for label, module in LADDER:
        if module:
            imports.append(module)
        code = "".join(f"import {m}\n" for m in imports) + RSS
        runs = []
        for _ in range(4):  # the first compiles the bytecode: not counted
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=True)
            runs.append(int(done.stdout.split()[-1]) / 1024)
        rss = sorted(runs[1:])[1]
        step = "" if previous is None else f"  (+{rss - previous:5.1f})"
        out.append(f"   {rss:6.1f} MiB{step}  {label}")
        previous = rss
    return out


STACK = "import asyncio, sqlite3, pydantic, fastapi, uvicorn, aiomqtt, serial_asyncio_fast\n"
MARGINAL = (
    ("the API stack (asyncio, sqlite3, pydantic, fastapi, uvicorn, aiomqtt, serial)", STACK),
    ("+ structlog (which imports rich.traceback, as rich is installed)",
     STACK + "import structlog\n"),
    ("+ structlog, rich blocked (what structlog costs without rich)",
     "import sys\nsys.modules['rich'] = None\n" + STACK + "import structlog\n"),
    ("+ structlog + pygal (the web charts)", STACK + "import structlog, pygal\n"),
    ("+ structlog + edge_agent.cli.app (click, rich tables)",
     STACK + "import structlog, edge_agent.cli.app\n"),
    ("+ structlog + the run chain (cli, daemon, drivers, sync)",
     STACK + "import structlog, edge_agent.cli.app, edge_agent.daemon, drivers, sync\n"),
)
CPU = ("import resource, sys\nr = resource.getrusage(resource.RUSAGE_SELF)\n"
       "print(r.ru_utime + r.ru_stime, len(sys.modules))\n")


def marginal(env: dict[str, str]) -> list[str]:
    """RSS, CPU and modules of what the run path adds on top of the API stack."""
    out = ["", "4. what each addition costs on top of the API stack (fresh interpreter each, "
           "median of 3 after a compiling run):", ""]
    for label, code in MARGINAL:
        runs = []
        for _ in range(4):
            done = subprocess.run([sys.executable, "-c", code + RSS + CPU], env=env,
                                  capture_output=True, text=True, check=True)
            rss, cpu, modules = done.stdout.split()
            runs.append((int(rss) / 1024, float(cpu), int(modules)))
        rss_m = sorted(r[0] for r in runs[1:])[1]
        cpu_m = sorted(r[1] for r in runs[1:])[1]
        out.append(f"   {rss_m:6.1f} MiB  {cpu_m:5.2f} s CPU  {runs[-1][2]:4d} modules  {label}")
    return out


def smaps(pid: int) -> list[str]:
    groups: dict[str, int] = defaultdict(int)
    stacks, total, anon = 0, 0, 0
    size_kb, name = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size_kb, name = (hi - lo) // 1024, head[5] if len(head) > 5 else ""
        elif head[0] == "Rss:":
            rss = int(head[1])
            total += rss
            if not name or name.startswith("["):
                anon += rss
                if name == "[stack]" or (not name and size_kb in (8192, 8188)):
                    stacks += rss
                    groups["thread stacks (8 MiB reserved each, main [stack])"] += rss
                else:
                    groups[f"anonymous {name or 'mmap'} (Python objects, arenas, C mallocs)"] \
                        += rss
            else:
                key = (name.split("site-packages/")[-1].split("/")[0]
                       if "site-packages/" in name else Path(name).name)
                groups[f"file {key}"] += rss
    threads = sorted((Path(f"/proc/{pid}/task/{t}/comm").read_text().strip())
                     for t in (p.name for p in Path(f"/proc/{pid}/task").iterdir()))
    out = ["", f"2. the agent after READY=1 + {SETTLE_S:g} s, devices connected: /proc/pid/smaps",
           f"   Rss total {total / 1024:.1f} MiB, of which anonymous {anon / 1024:.1f} MiB,"
           f" file-backed {(total - anon) / 1024:.1f} MiB (code and data of binaries/.so)", ""]
    for label, kb in sorted(groups.items(), key=lambda kv: -kv[1])[:20]:
        out.append(f"   {kb / 1024:6.2f} MiB  {label}")
    out += ["", f"   threads ({len(threads)}): {', '.join(threads)}"]
    return out


async def agents(work: Path) -> list[str]:
    async with demo_store(work) as config:
        out: list[str] = []
        for traced in (False, True):
            trigger, dump = work / f"trigger-{traced}", work / f"dump-{traced}.txt"
            argv = agent_argv(config)
            if traced:
                argv = [sys.executable, str(Path(__file__).with_name("traced.py")),
                        str(trigger), str(dump), *argv[3:]]
            agent = Notified(work, argv)
            try:
                await asyncio.to_thread(agent.wait_ready)
                await asyncio.sleep(SETTLE_S)
                if not traced:
                    out += smaps(agent.proc.pid)
                    continue
                trigger.write_text("")
                deadline = time.monotonic() + 60
                while not dump.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # another process writes it: no event to await
                out += ["", "3. the same agent under tracemalloc (RSS inflated by the "
                        "tracing: read the allocations, not the total)", ""]
                out += ["   " + line for line in dump.read_text().splitlines()]
            finally:
                agent.stop()
        return out


def main() -> None:
    with scratch_dir("bench-profile-memory-") as work:
        SPAWN_ENV.clear()
        SPAWN_ENV.update(installed_env(work))
        env = {**os.environ, **SPAWN_ENV}
        body = ladder(env)
        body += asyncio.run(agents(work))
        body += marginal(env)
    write_profile("memory", "Idle RSS: where the agent's resident memory goes", body)


if __name__ == "__main__":
    main()
