"""RFID counts: tag reads through count aggregation against the bare parse loop, and the
memory an open count holds for 100k distinct EPCs.

Run alone: ``.venv/bin/python -m bench.rfid [--quick]`` (or ``python -m bench --only rfid``).

Workload: a UHF notice stream (the ``BB 02 22 … 7E`` frames a reader sends) of distinct
SGTIN-96 tags over 20 GTINs, each tag read 5-50 times, shuffled, fed in 4 KiB chunks.

* **bare parse loop** (the ceiling): :class:`drivers.uhf.UhfParser` alone, frames counted.
* **count aggregation**: the same parse, then for *every* read what a count does with it:
  the tag's EPC, its GTIN (SGTIN-96 decoded once per EPC), and
  :meth:`edge_agent.rfid.tally.CountSession.read` (de-duplication by EPC, per zone). In the
  agent the reader's presence window already drops most repeats before the count sees
  them, so this is the worst case.
* **memory**: tracemalloc of a :class:`CountSession` holding 100k distinct EPCs (keys
  included), beside the 12 bytes per EPC of the raw tags (the floor) and a naive
  per-EPC record (a dict of fields per tag).
* **close**: the counting rule (:func:`edge_agent.rfid.tally.tally`) over those 100k EPCs
  with 5% of them sold, pure (no ledger).
"""

from __future__ import annotations

import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench.common import Row
from drivers.epc import decode_sgtin96, encode_sgtin96, gs1_check_digit
from drivers.uhf import UhfFrame, UhfParser, encode_tag_notice
from edge_agent.rfid.tally import CountSession, tally

COMPANY = "4012345"
CHUNK = 4096


def gtins(n: int = 20) -> list[str]:
    out = []
    for i in range(n):
        body = "0" + COMPANY + f"{i:05d}"
        out.append(body + str(gs1_check_digit(body)))
    return out


def stream(tags: int, seed: int = 22) -> tuple[bytes, int]:
    """The notice bytes and the number of reads in them."""
    rng = random.Random(seed)
    pool = gtins()
    frames: list[bytes] = []
    for serial in range(tags):
        frame = encode_tag_notice(encode_sgtin96(pool[serial % 20], serial, len(COMPANY)),
                                  rssi=-rng.randint(40, 70))
        frames += [frame] * rng.randint(5, 50)
    rng.shuffle(frames)
    return b"".join(frames), len(frames)


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def bare_parse(data: bytes) -> Callable[[], int]:
    def run() -> int:
        parser = UhfParser()
        feed = parser.feed
        n = 0
        for i in range(0, len(data), CHUNK):
            n += len(feed(data[i:i + CHUNK]))
        return n

    return run


def count_aggregation(data: bytes) -> Callable[[], int]:
    def run() -> int:
        parser = UhfParser()
        feed = parser.feed
        session = CountSession("bench", None, 0.0)
        read = session.read
        gtin_of: dict[str, str | None] = {}
        n = 0
        for i in range(0, len(data), CHUNK):
            for frame in feed(data[i:i + CHUNK]):
                if not isinstance(frame, UhfFrame) or frame.notice is None:
                    continue
                epc = frame.notice.epc_hex
                if epc in gtin_of:
                    gtin = gtin_of[epc]
                else:
                    sg = decode_sgtin96(frame.notice.epc)
                    gtin = gtin_of[epc] = sg.gtin if sg else None
                read(epc, gtin, "floor")
                n += 1
        return n

    return run


def _epcs(n: int) -> list[tuple[str, str]]:
    pool = gtins()
    return [(encode_sgtin96(pool[i % 20], i, len(COMPANY)).hex().upper(), pool[i % 20])
            for i in range(n)]


def memory(n: int) -> dict[str, float]:
    source = _epcs(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    session = CountSession("mem", None, 0.0, max_epcs=n)
    for epc, gtin in source:
        session.read("".join(epc), gtin, "floor")  # a fresh key string, as a reader makes
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    if session.distinct != n:
        raise AssertionError(f"{session.distinct} of {n} EPCs held")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    naive = {"".join(epc): {"epc": epc, "gtin": gtin, "zone": "floor", "reads": 1,
                            "first_seen": 0.0} for epc, gtin in source}
    naive_held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del naive
    return {"count_mib": held / 2**20, "raw_epc_mib": n * 12 / 2**20,
            "naive_record_mib": naive_held / 2**20, "bytes_per_epc": held / n}


def close_time(n: int) -> dict[str, float]:
    source = _epcs(n)
    session = CountSession("close", None, 0.0, max_epcs=n)
    for epc, gtin in source:
        session.read(epc, gtin, "floor")
    sold = {epc for i, (epc, _) in enumerate(source) if i % 20 == 0}
    sku_of: dict[str, str | None] = {g: f"SKU-{i}" for i, g in enumerate(gtins())}
    t0 = time.perf_counter()
    result = tally(session.epcs, sold, sku_of)
    seconds = time.perf_counter() - t0
    if sum(result.counted.values()) != n - len(sold):
        raise AssertionError("the counting rule lost tags")
    return {"tally_100k_ms": seconds * 1000}


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    tags = 200 if tiny else 2000 if quick else 10_000
    repeat = 2 if tiny else 3 if quick else 5
    distinct = 5_000 if tiny else 100_000
    data, reads = stream(tags)
    t_bare, n_bare = _best(bare_parse(data), repeat)
    t_count, n_count = _best(count_aggregation(data), repeat)
    if n_bare != reads or n_count != reads:
        raise AssertionError(f"frames lost: {n_bare}, {n_count} of {reads}")
    out: dict[str, Any] = {
        "tags": tags, "reads": reads,
        "bare_parse_reads_per_s": n_bare / t_bare,
        "count_aggregation_reads_per_s": n_count / t_count,
        "ratio": (n_count / t_count) / (n_bare / t_bare),
        "distinct_epcs": distinct,
        **memory(distinct), **close_time(distinct),
        "loadavg_1m": os.getloadavg()[0],
    }
    out["targets"] = {"count >= 0.5x bare parse": out["ratio"] >= 0.5,
                      "count memory <= 32 MiB per 100k EPCs":
                          out["count_mib"] * 100_000 / distinct <= 32.0}
    return out


def rows(f: dict[str, Any]) -> list[Row]:
    g = "rfid"
    per_100k = f["count_mib"] * 100_000 / f["distinct_epcs"]
    return [
        Row(g, "tag reads through parse + count aggregation", f["count_aggregation_reads_per_s"],
            "reads/s", f["bare_parse_reads_per_s"], "bare UHF parse loop", "≥ 0.5x bare",
            f["ratio"] >= 0.5, note=f"{f['tags']:,} tags, {f['reads']:,} reads"),
        Row(g, f"open count memory, {f['distinct_epcs']:,} distinct EPCs", f["count_mib"], "MiB",
            f["naive_record_mib"], "naive per-tag record", "≤ 32 MiB per 100k",
            per_100k <= 32.0, note=f"raw 12-byte EPCs: {f['raw_epc_mib']:.1f} MiB"),
        Row(g, f"counting rule at close, {f['distinct_epcs']:,} EPCs", f["tally_100k_ms"], "ms"),
    ]


def main() -> None:
    res = run(quick="--quick" in sys.argv[1:], tiny="--tiny" in sys.argv[1:])
    print(f"load average (1 min): {res['loadavg_1m']:.2f}")
    print(f"{res['tags']:,} distinct tags, {res['reads']:,} reads (5-50 per tag)")
    print(f"{'path':<34}{'reads/s':>14}{'ratio':>8}")
    print(f"{'bare parse loop (ceiling)':<34}{res['bare_parse_reads_per_s']:>14,.0f}{1:>8.2f}")
    print(f"{'parse + count aggregation':<34}{res['count_aggregation_reads_per_s']:>14,.0f}"
          f"{res['ratio']:>8.2f}")
    print(f"open count, {res['distinct_epcs']:,} distinct EPCs: {res['count_mib']:.1f} MiB "
          f"({res['bytes_per_epc']:.0f} B/EPC); raw 12-byte EPCs {res['raw_epc_mib']:.1f} MiB; "
          f"naive per-tag record {res['naive_record_mib']:.1f} MiB")
    print(f"counting rule over them (5% sold): {res['tally_100k_ms']:.0f} ms")
    print(f"targets: {res['targets']}")


if __name__ == "__main__":
    main()
