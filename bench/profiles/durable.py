"""Profile of write → durable (issue 18: p99 ≤ 10 ms at 1,000 sale facts/s).

One job: say where the time of the slowest 1 % of ``ledger.write`` calls goes, measured
with the real ledger (group commit, WAL, ``synchronous=FULL``) at 1,000 facts/s, timing
around its public API only:

- **queue wait**: from the call to the op starting on the writer thread (the previous
  group's commit and fsync, or the writer thread not being scheduled);
- **op**: the op itself (validation, canonical JSON, seq, stock projection);
- **to COMMIT**: the op's end to the group's ``COMMIT`` statement (the rest of its group,
  the flush); the connection's own trace callback (``Tx.conn.set_trace_callback``) says when;
- **COMMIT → caller resumed**: the WAL append, its fsync, the answer crossing back to the
  event loop and the loop getting to it.

Beside them, in the same run: a bare ``write`` + ``fsync`` of 300 B on the same disk at the
same pace (the floor any durable write pays), and the event loop's lag (a 1 ms timer's
overshoot), which is the machine's scheduling delay under its load.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, scratch_dir
from bench.ledger import SALE
from bench.profiles import write_profile
from edge_agent.ledger import Ledger, Tx

RATE = 1000.0
SECONDS = 10.0


class Timeline:
    """COMMIT statements as the writer connection runs them (perf_counter, sorted)."""

    def __init__(self) -> None:
        self.commits: list[float] = []
        self.lock = threading.Lock()

    def trace(self, sql: str) -> None:
        if sql.startswith("COMMIT"):
            with self.lock:
                self.commits.append(time.perf_counter())

    def commit_after(self, t: float) -> float | None:
        import bisect  # noqa: PLC0415

        with self.lock:
            i = bisect.bisect_left(self.commits, t)
            return self.commits[i] if i < len(self.commits) else None


async def paced_writes(ledger: Ledger, timeline: Timeline) -> list[dict[str, float]]:
    records: list[dict[str, float]] = []

    async def one() -> None:
        rec: dict[str, float] = {"submit": time.perf_counter()}

        def op(tx: Tx) -> Any:
            rec["op_start"] = time.perf_counter()
            result = tx.append("sale", SALE, stock=[("A-100", -2)])
            rec["op_end"] = time.perf_counter()
            return result

        await ledger.write(op)
        rec["done"] = time.perf_counter()
        records.append(rec)

    tasks = []
    start = time.perf_counter()
    for i in range(int(RATE * SECONDS)):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(), name=f"profile.durable.{i}"))
    await asyncio.gather(*tasks)
    for rec in records:
        rec["commit"] = timeline.commit_after(rec["op_end"]) or rec["done"]
    return records


async def loop_lag(stop: asyncio.Event) -> list[float]:
    lags = []
    while not stop.is_set():
        begun = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - begun - 0.001)
    return lags


def bare_fsync(path: Path, count: int) -> list[float]:
    """write + fsync of 300 B, paced at RATE: the disk's floor for one durable write."""
    out = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            begun = time.perf_counter()
            os.write(fd, b"x" * 300)
            os.fsync(fd)
            out.append(time.perf_counter() - begun)
    finally:
        os.close(fd)
    return out


async def measure(work: Path) -> tuple[list[dict[str, float]], list[float]]:
    timeline = Timeline()
    with Ledger.open(work / "ledger.db", "BENCH") as ledger:
        await ledger.write(lambda tx: tx.conn.set_trace_callback(timeline.trace))
        stop = asyncio.Event()
        lag_task = asyncio.create_task(loop_lag(stop), name="profile.durable.lag")
        records = await paced_writes(ledger, timeline)
        stop.set()
        lags = await lag_task
        await ledger.write(lambda tx: tx.conn.set_trace_callback(None))
    return records, lags


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def report(records: list[dict[str, float]], lags: list[float], fsyncs: list[float]) -> list[str]:
    parts = (("queue wait", "submit", "op_start"), ("op", "op_start", "op_end"),
             ("op end → COMMIT", "op_end", "commit"), ("COMMIT → caller resumed", "commit",
                                                       "done"))
    total = sorted(records, key=lambda r: r["done"] - r["submit"])
    slow = total[-max(1, len(total) // 100):]
    fast = total[: len(total) // 2]
    lat = [r["done"] - r["submit"] for r in total]
    out = [f"{len(records)} ledger.write calls of one sale fact at {RATE:g}/s for {SECONDS:g} s "
           f"(WAL, synchronous=FULL, group commit)",
           f"   write → durable: p50 {ms(percentile(lat, 0.5))}, p99 {ms(percentile(lat, 0.99))},"
           f" max {ms(lat[-1])}  (target p99 ≤ 10 ms)", "",
           "where the time goes (mean of each part):", "",
           f"   {'part':<26}{'slowest 1 %':>14}{'fastest 50 %':>16}"]
    for label, a, b in parts:
        s = sum(r[b] - r[a] for r in slow) / len(slow)
        f = sum(r[b] - r[a] for r in fast) / len(fast)
        out.append(f"   {label:<26}{ms(s):>14}{ms(f):>16}")
    out += ["", "in the same run, the floors:",
            f"   bare write+fsync of 300 B, same disk, same pace: p50 {ms(percentile(fsyncs, .5))},"
            f" p99 {ms(percentile(fsyncs, .99))}, max {ms(max(fsyncs))}",
            f"   event-loop lag (1 ms timer overshoot) during the writes: p50 "
            f"{ms(percentile(lags, .5))}, p99 {ms(percentile(lags, .99))}, max {ms(max(lags))}",
            f"   load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
            f"{os.cpu_count()} cores"]
    return out


def main() -> None:
    with scratch_dir("bench-profile-durable-") as work:
        records, lags = asyncio.run(measure(work))
        fsyncs = bare_fsync(work / "bare.bin", int(RATE * 3))
    write_profile("durable", "Write → durable at 1,000 facts/s: where the p99 goes",
                  report(records, lags, fsyncs))


if __name__ == "__main__":
    main()
