"""Profile of write → durable (issue 18: p99 ≤ 10 ms at 1,000 sale facts/s).

One job: say where the time of the slowest 1 % of ``ledger.write`` calls goes, measured
with the real ledger (group commit, WAL, ``synchronous=FULL``) at 1,000 facts/s, timing
around its public API only:

- **queue wait**: from the call to the op starting on the writer thread (the previous
  group's commit and fsync, or the writer thread not being scheduled);
- **op**: the op itself (validation, canonical JSON, seq, stock projection);
- **to COMMIT**: the op's end to the group's ``COMMIT`` statement (the rest of its group,
  the flush); the connection's own trace callback (``Tx.conn.set_trace_callback``) says when;
- **COMMIT**: the ``COMMIT`` statement itself: the WAL append and its fsync (its end is
  seen by a profile hook on the writer thread, which slows that thread's Python a little);
- **committed → caller resumed**: the answer crossing back to the event loop and the loop
  getting to it.

Beside them, in the same run: a bare ``write`` + ``fsync`` of 300 B on the same disk at the
same pace (the floor any durable write pays), and the event loop's lag (a 1 ms timer's
overshoot), which is the machine's scheduling delay under its load.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import percentile, scratch_dir
from bench.ledger import SALE
from bench.profiles import write_profile
from edge_agent.ledger import Ledger, Tx

RATE = 1000.0
SECONDS = 10.0


class Timeline:
    """``COMMIT`` statements as the writer connection runs them (perf_counter, sorted): when
    each starts (the connection's trace callback) and ends (the ``execute`` call that ran it
    returning, seen by a profile hook installed on the writer thread only)."""

    def __init__(self) -> None:
        self.commits: list[float] = []
        self.ends: list[float] = []
        self.lock = threading.Lock()
        self.in_commit = False

    def trace(self, sql: str) -> None:
        if sql.startswith("COMMIT"):
            with self.lock:
                self.commits.append(time.perf_counter())
            self.in_commit = True

    def hook(self, _frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_return" and self.in_commit and getattr(arg, "__name__", "") == "execute":
            self.in_commit = False
            with self.lock:
                self.ends.append(time.perf_counter())

    def commit_after(self, t: float) -> tuple[float, float] | None:
        """(start, end) of the first COMMIT after ``t``."""
        with self.lock:
            i = bisect.bisect_left(self.commits, t)
            if i >= len(self.commits):
                return None
            j = bisect.bisect_left(self.ends, self.commits[i])
            return self.commits[i], self.ends[j] if j < len(self.ends) else self.commits[i]


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
        rec["commit"], rec["committed"] = timeline.commit_after(rec["op_end"]) \
            or (rec["done"], rec["done"])
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


def schedstat(tid: int) -> tuple[int, int, int]:
    """(ns on a CPU, ns waiting on a run queue for one, timeslices) of one thread."""
    fields = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
    return int(fields[0]), int(fields[1]), int(fields[2])


def sched_lines(name: str, before: tuple[int, int, int], after: tuple[int, int, int],
                wall: float) -> str:
    cpu, wait, slices = (b - a for a, b in zip(before, after, strict=True))
    return (f"   {name:<22} on a CPU {cpu / 1e9:6.3f} s, waiting on the run queue for a CPU "
            f"{wait / 1e9:6.3f} s over {slices} wake-ups ({wait / max(slices, 1) / 1e6:.2f} ms "
            f"each on average), of {wall:.1f} s")


async def measure(work: Path) -> tuple[list[dict[str, float]], list[float], list[str]]:
    timeline = Timeline()
    threading.setprofile(timeline.hook)  # the writer thread starts in Ledger.open
    try:
        ledger = Ledger.open(work / "ledger.db", "BENCH")
    finally:
        threading.setprofile(None)  # type: ignore[arg-type,unused-ignore]  # None clears
    with ledger:
        await ledger.write(lambda tx: tx.conn.set_trace_callback(timeline.trace))
        writer = await ledger.write(lambda tx: threading.get_native_id())
        loop_tid = threading.get_native_id()
        before = schedstat(writer), schedstat(loop_tid), time.perf_counter()
        stop = asyncio.Event()
        lag_task = asyncio.create_task(loop_lag(stop), name="profile.durable.lag")
        records = await paced_writes(ledger, timeline)
        stop.set()
        lags = await lag_task
        wall = time.perf_counter() - before[2]
        sched = [sched_lines("ledger writer thread", before[0], schedstat(writer), wall),
                 sched_lines("event-loop thread", before[1], schedstat(loop_tid), wall)]
        await ledger.write(lambda tx: tx.conn.set_trace_callback(None))
    return records, lags, sched


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def report(records: list[dict[str, float]], lags: list[float], fsyncs: list[float],
           sched: Sequence[str] = ()) -> list[str]:
    parts = (("queue wait", "submit", "op_start"), ("op", "op_start", "op_end"),
             ("op end → COMMIT", "op_end", "commit"),
             ("COMMIT (WAL write + fsync)", "commit", "committed"),
             ("committed → caller resumed", "committed", "done"))
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
            "the two threads as the kernel scheduled them (/proc/self/task/<tid>/schedstat):",
            *sched,
            f"   load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
            f"{os.cpu_count()} cores"]
    return out


def main() -> None:
    with scratch_dir("bench-profile-durable-") as work:
        records, lags, sched = asyncio.run(measure(work))
        fsyncs = bare_fsync(work / "bare.bin", int(RATE * 3))
    write_profile("durable", "Write → durable at 1,000 facts/s: where the p99 goes",
                  report(records, lags, fsyncs, sched))


if __name__ == "__main__":
    main()
