"""Profile of the drain (issue 18: real agent → reference central ≥ 250k ev/s, ≥ 50x naive).

One job: say what each side of a backlog drain spends per event, in one run with a
200,000-event backlog (as :mod:`bench.sync` builds it) through a private mosquitto:

1. plain: events/s, the agent's CPU per event (``getrusage`` of this process, every
   thread) and the central's (``getrusage`` of its waited child process, less an idle
   central's start and stop);
2. profiled: cProfile of every thread on both sides (:mod:`bench.profiles.threaded`),
   own time grouped by kind of work: decode/encode (orjson, JSON), SQLite, SHA-256,
   MQTT (paho/aiomqtt, sockets), asyncio, our code;
3. what "use both cores" would need, from those figures.
"""

from __future__ import annotations

import asyncio
import os
import pstats
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.common import running_broker, scratch_dir
from bench.profiles import short, write_profile
from bench.profiles.threaded import profiling
from bench.sync import build_backlog, drain, reference_central

EVENTS = 200_000
KINDS = (
    ("waiting, not CPU (epoll/select, queue get, locks)", ("epoll", "select.select",
                                                          "SimpleQueue", "acquire")),
    ("SQLite (execute, fetch, commit)", ("sqlite3", "Connection", "Cursor")),
    ("SHA-256 / hashing", ("sha256", "hashlib", "_hashlib")),
    ("JSON encode/decode (orjson, json)", ("orjson", "json", "dumps", "loads")),
    ("MQTT + sockets (paho, aiomqtt, send/recv)", ("paho", "aiomqtt", "socket", "recv",
                                                   "send", "select", "epoll")),
    ("asyncio", ("asyncio",)),
    ("our code (sync, central, edge_agent)", ("/sync/", "/central/", "/edge_agent/")),
)


def kind_of(filename: str, function: str) -> str:
    text = f"{filename} {function}"
    for label, keys in KINDS:
        if any(key in text for key in keys):
            return label
    return "other (stdlib, pydantic, builtins)"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def copy_backlog(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            Path(f"{dest}{suffix}").write_bytes(Path(f"{source}{suffix}").read_bytes())


def one_drain(work: Path, db: Path, epoch: str, tag: str, profile: bool
              ) -> tuple[dict[str, float], float, float, float]:
    """(drain figures, agent CPU s, central CPU s incl. its start and stop, mosquitto's)."""
    copy = work / tag / "ledger.db"
    copy_backlog(db, copy)
    launcher = [sys.executable, str(Path(__file__).with_name("threaded.py")),
                str(work / f"central-{tag}.prof")] if profile else []
    with running_broker(work / f"broker-{tag}") as broker:
        (work / f"central-{tag}").mkdir()
        before_children = children_cpu()
        with reference_central(work / f"central-{tag}", broker.port, launcher):
            before = self_cpu()
            if profile:
                with profiling(work / f"agent-{tag}.prof"):
                    result = asyncio.run(drain(copy, broker.url, EVENTS, epoch))
            else:
                result = asyncio.run(drain(copy, broker.url, EVENTS, epoch))
            agent = self_cpu() - before
        central = children_cpu() - before_children
    return result, agent, central, children_cpu() - before_children - central


def idle_central(work: Path) -> float:
    """CPU of a central that starts, sits 1 s and stops (subtracted from a drain's)."""
    with running_broker(work / "broker-idle") as broker:
        (work / "central-idle").mkdir()
        before = children_cpu()
        with reference_central(work / "central-idle", broker.port):
            time.sleep(1.0)
        return children_cpu() - before


def by_kind(stats: pstats.Stats, events: int) -> list[str]:
    raw = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table there
    total = sum(v[2] for v in raw.values())
    kinds: dict[str, float] = defaultdict(float)
    for (filename, _line, function), v in raw.items():
        kinds[kind_of(filename, function)] += v[2]
    busy = total - kinds[KINDS[0][0]]
    out = [f"   profiled own time {total:.2f} s over all threads, {busy:.2f} s of it not waiting "
           f"= {busy / events * 1e6:.1f} µs per event (cProfile inflates Python-heavy code "
           "most: read the shares)"]
    for label, seconds in sorted(kinds.items(), key=lambda kv: -kv[1]):
        out.append(f"   {seconds / events * 1e6:8.2f} µs/event  {seconds / total:5.1%}  {label}")
    out.append("   top 12 functions by own time:")
    for (filename, line, function), v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:12]:
        where = short(filename)
        out.append(f"   {v[2]:7.3f} s {v[1]:9d} calls  {function}  ({where}:{line})")
    return out


def main() -> None:
    with scratch_dir("bench-profile-drain-") as work:
        db = work / "backlog" / "ledger.db"
        build_backlog(db, EVENTS)
        from edge_agent.ledger import Ledger  # noqa: PLC0415

        with Ledger.open(db, "S001") as ledger:
            epoch = ledger.current_epoch
        idle = idle_central(work)
        plain, agent_cpu, central_cpu, broker_cpu = one_drain(work, db, epoch, "plain",
                                                               profile=False)
        one_drain(work, db, epoch, "profiled", profile=True)
        agent_stats = pstats.Stats(str(work / "agent-profiled.prof"))
        central_stats = pstats.Stats(str(work / "central-profiled.prof"))
    rate, seconds = plain["events_per_s"], plain["seconds"]
    central_net = max(0.0, central_cpu - idle)
    a_us, c_us = agent_cpu / EVENTS * 1e6, central_net / EVENTS * 1e6
    body = [
        f"1. plain drain of {EVENTS:,} events into the reference central (SQLite): "
        f"{rate:,.0f} ev/s, {seconds:.2f} s (target ≥ 250k ev/s)",
        f"   agent CPU   {agent_cpu:6.2f} s = {a_us:5.2f} µs/event "
        f"({agent_cpu / seconds:.0%} of one core during the drain)",
        f"   central CPU {central_net:6.2f} s = {c_us:5.2f} µs/event "
        f"({central_net / seconds:.0%} of one core; {central_cpu:.2f} s less {idle:.2f} s of "
        "an idle central's start and stop)",
        f"   mosquitto   {broker_cpu:6.2f} s = {broker_cpu / EVENTS * 1e6:5.2f} µs/event (its "
        "start and stop included)",
        f"   all of them and the rest of the machine share the same {os.cpu_count()} cores "
        f"(load {' '.join(f'{x:.2f}' for x in os.getloadavg())})",
        "", "2. profiled (every thread), agent side:", *by_kind(agent_stats, EVENTS),
        "", "   central side:", *by_kind(central_stats, EVENTS),
        "", "3. what 250k ev/s needs: 4.0 µs of wall time per event end to end. With the agent",
        f"   at {a_us:.1f} µs/event and the central at {c_us:.1f} µs/event of CPU, a pipeline",
        f"   running both at once on separate cores is bounded by the slower side: "
        f"{1e6 / max(a_us, c_us, 1e-9):,.0f} ev/s;",
        f"   one core doing both sequentially: {1e6 / max(a_us + c_us, 1e-9):,.0f} ev/s.",
    ]
    write_profile("drain", "Drain: per-event CPU on each side of the wire", body)


if __name__ == "__main__":
    main()
