"""Driver hot paths: EM4100 and UHF parse + dedup against a bare ``bytes.find`` loop.

Run: ``.venv/bin/python -m bench.drivers [--quick]``.

Workload: a buffer of back-to-back frames from a small set of tags (readers
repeat a card many times a second, UHF inventories see the same tags every
round), fed to the parser in 4 KiB chunks as a serial read would deliver it;
every frame goes through the presence tracker (dedup).  The ceiling is a bare
``bytes.find`` loop over the same whole buffer that slices out the tag id and
stores it in a dict of last-seen times: no validation, no chunking, no objects.
The ``*_unique`` rows are the worst case for the parser's frame cache (every
frame a different tag, so every frame is validated and decoded).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from drivers.em4100 import Em4100Frame, Em4100Parser, encode_em4100
from drivers.epc import encode_sgtin96
from drivers.presence import PresenceTracker
from drivers.uhf import UhfFrame, UhfParser, encode_tag_notice, parse_tag_notice

CHUNK = 4096


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def _chunks(buf: bytes) -> list[bytes]:
    return [buf[i : i + CHUNK] for i in range(0, len(buf), CHUNK)]


def em4100_driver(buf: bytes) -> Callable[[], int]:
    chunks = _chunks(buf)

    def run() -> int:
        parser = Em4100Parser()
        tracker = PresenceTracker(1.0)
        now = time.time()
        n = 0
        seen = tracker.seen
        for chunk in chunks:
            for item in parser.feed(chunk):
                if type(item) is Em4100Frame:
                    seen(item.tag_id, now)
                    n += 1
        return n

    return run


def em4100_bare(buf: bytes) -> Callable[[], int]:
    def run() -> int:
        last: dict[bytes, float] = {}
        now = time.time()
        n = 0
        find = buf.find
        i = find(b"\x02")
        while i >= 0:
            last[buf[i + 1 : i + 11]] = now
            n += 1
            i = find(b"\x02", i + 14)
        return n

    return run


def uhf_driver(buf: bytes) -> Callable[[], int]:
    chunks = _chunks(buf)

    def run() -> int:
        parser = UhfParser()
        tracker = PresenceTracker(2.0)
        now = time.time()
        n = 0
        seen = tracker.seen
        for chunk in chunks:
            for item in parser.feed(chunk):
                if type(item) is UhfFrame:
                    notice = parse_tag_notice(item)
                    if notice is not None:
                        seen(notice.epc_hex, now)
                        n += 1
        return n

    return run


def uhf_bare(buf: bytes) -> Callable[[], int]:
    def run() -> int:
        last: dict[bytes, float] = {}
        now = time.time()
        n = 0
        find = buf.find
        i = find(b"\xbb")
        while i >= 0:
            plen = (buf[i + 3] << 8) | buf[i + 4]
            last[buf[i + 8 : i + 5 + plen - 2]] = now
            n += 1
            i = find(b"\xbb", i + 7 + plen)
        return n

    return run


def run(quick: bool = False) -> dict[str, float]:
    rng = random.Random(7)
    frames = 20_000 if quick else 200_000
    repeat = 3 if quick else 5
    tags = [f"{rng.randrange(1 << 40):010X}" for _ in range(16)]
    em_buf = b"".join(encode_em4100(rng.choice(tags)) for _ in range(frames))
    # UHF frames are drawn from a pool with no 0xBB byte after the head, so the
    # bare loop (which validates nothing and cannot resync) stays correct; the
    # driver itself handles any EPC.
    pool: list[bytes] = []
    while len(pool) < 64:
        f = encode_tag_notice(
            encode_sgtin96("80614141123458", rng.randrange(1 << 38), 7),
            rssi=rng.randrange(-70, -50),
        )
        if 0xBB not in f[1:]:
            pool.append(f)
    uhf_buf = b"".join(rng.choice(pool) for _ in range(frames))

    # Worst case for the frame cache: every frame a different tag.
    em_unique = b"".join(encode_em4100(f"{rng.randrange(1 << 40):010X}") for _ in range(frames))
    uniq: list[bytes] = []
    while len(uniq) < frames:
        f = encode_tag_notice(encode_sgtin96("80614141123458", rng.randrange(1 << 38), 7), -60)
        if 0xBB not in f[1:]:
            uniq.append(f)
    uhf_unique = b"".join(uniq)

    out: dict[str, float] = {}
    for name, buf, driver, bare in (
        ("em4100", em_buf, em4100_driver, em4100_bare),
        ("uhf", uhf_buf, uhf_driver, uhf_bare),
        ("em4100_unique", em_unique, em4100_driver, em4100_bare),
        ("uhf_unique", uhf_unique, uhf_driver, uhf_bare),
    ):
        t_drv, n_drv = _best(driver(buf), repeat)
        t_bare, n_bare = _best(bare(buf), repeat)
        if n_drv != n_bare:
            raise RuntimeError(f"{name}: driver saw {n_drv} frames, bare loop {n_bare}")
        out[f"{name}_driver_frames_per_s"] = n_drv / t_drv
        out[f"{name}_bare_find_frames_per_s"] = n_bare / t_bare
        out[f"{name}_ratio"] = (n_drv / t_drv) / (n_bare / t_bare)
    out["frames"] = float(frames)
    return out


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    res = run(quick=quick)
    print(f"{'workload':<10}{'driver frames/s':>18}{'bare find frames/s':>22}{'ratio':>9}")
    for name in ("em4100", "uhf", "em4100_unique", "uhf_unique"):
        print(
            f"{name:<10}{res[f'{name}_driver_frames_per_s']:>18,.0f}"
            f"{res[f'{name}_bare_find_frames_per_s']:>22,.0f}{res[f'{name}_ratio']:>9.2f}"
        )
    print(f"target: ratio >= 0.50 ({int(res['frames']):,} frames per workload, 4 KiB chunks)")
    print("em4100/uhf: 16/64 tags repeating (the real pattern); *_unique: every frame new")
    print(res)


if __name__ == "__main__":
    main()
