"""Presence reads through dedup and sessionisation against a bare dedup loop.

Run: ``.venv/bin/python -m bench.visitors [--quick]``.

Workload: a stream of presence reads in time order (a read every 10 ms of store time)
from shoppers who each stay a few minutes and are read again and again (RFID readers
repeat, BLE scanners report every advertisement); ``tick`` runs once per store second, as
the engine does. The sessioniser (:class:`edge_agent.visitors.sessions.Sessioniser`, pure,
no I/O) dedups each read against its raw-id table, computes the HMAC pseudonym for a new
id, opens visits, and closes them after the absence gap. The ceiling is the bare dedup
loop of the same stream: a dict of last-seen times, no pseudonyms, no visits.

``unique`` is the worst case: every read a new shopper (an HMAC and a visit per read).
"""

from __future__ import annotations

import bisect
import random
import sys
import time
from collections.abc import Callable

from edge_agent.visitors.sessions import Sessioniser

KEY = bytes(range(32))
STEP_S = 0.01


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def workload(reads: int, shoppers: int, seed: int = 7) -> list[tuple[str, float]]:
    """(raw id, store time) pairs: ``shoppers`` ids with overlapping stays of equal length;
    each read is of a shopper in the store at that moment, chosen at random."""
    rng = random.Random(seed)
    span = reads * STEP_S
    stay = span / shoppers * 8  # about eight shoppers in at any moment
    starts = sorted(rng.uniform(0, span - stay) for _ in range(shoppers))
    ids = [f"{rng.randrange(1 << 40):010X}" for _ in range(shoppers)]
    out = []
    for i in range(reads):
        now = i * STEP_S
        lo = bisect.bisect_right(starts, now - stay)  # left already
        hi = bisect.bisect_right(starts, now)  # arrived
        out.append((ids[rng.randrange(lo, hi)] if hi > lo else ids[0], now))
    return out


def unique_workload(reads: int) -> list[tuple[str, float]]:
    return [(f"{i:010X}", i * STEP_S) for i in range(reads)]


def sessioniser_loop(stream: list[tuple[str, float]]) -> Callable[[], int]:
    def run() -> int:
        sessions = Sessioniser(KEY, gap_s=300.0, dedup_s=10.0)
        read = sessions.read
        tick = sessions.tick
        next_tick = 1.0
        closed = 0
        for raw, now in stream:
            if now >= next_tick:
                closed += len(tick(now))
                next_tick = now + 1.0
            read(raw, "rfid-1", "em4100", "entrance", True, now)
        return len(stream)

    return run


def bare_loop(stream: list[tuple[str, float]]) -> Callable[[], int]:
    def run() -> int:
        last: dict[str, float] = {}
        window = 10.0
        new = 0
        for raw, now in stream:
            prev = last.get(raw)
            if prev is None or now - prev >= window:
                new += 1
            last[raw] = now
        return len(stream)

    return run


def run(quick: bool = False) -> dict[str, float]:
    reads = 40_000 if quick else 400_000
    repeat = 3 if quick else 5
    out: dict[str, float] = {"reads": reads}
    for name, stream in (
        ("repeat", workload(reads, shoppers=max(50, reads // 400))),
        ("unique", unique_workload(reads // 4)),
    ):
        t_s, n_s = _best(sessioniser_loop(stream), repeat)
        t_b, n_b = _best(bare_loop(stream), repeat)
        out[f"{name}_reads"] = n_s
        out[f"{name}_sessioniser_reads_per_s"] = n_s / t_s
        out[f"{name}_bare_dedup_reads_per_s"] = n_b / t_b
        out[f"{name}_ratio"] = (n_s / t_s) / (n_b / t_b)
    return out


def main() -> None:
    res = run(quick="--quick" in sys.argv[1:])
    print(f"{'workload':<10}{'sessioniser reads/s':>22}{'bare dedup reads/s':>21}{'ratio':>8}")
    for name in ("repeat", "unique"):
        print(
            f"{name:<10}{res[f'{name}_sessioniser_reads_per_s']:>22,.0f}"
            f"{res[f'{name}_bare_dedup_reads_per_s']:>21,.0f}{res[f'{name}_ratio']:>8.2f}"
        )
    print(f"target: repeat ratio >= 0.30 ({int(res['repeat_reads']):,} repeat reads, "
          f"{int(res['unique_reads']):,} unique reads)")
    print(res)


if __name__ == "__main__":
    main()
