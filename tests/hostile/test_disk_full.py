"""Disk full: the ledger on a real 2 MiB tmpfs (mounted by the test, root only).

The ledger fills the filesystem with facts (single writes and concurrent groups) until
SQLite reports SQLITE_FULL. Then: every write is refused with ``DiskFull`` (not another
error, nothing half-recorded); every fact acknowledged before is still there; the seq has
no gap; ``PRAGMA quick_check`` is ok. When space returns (a filler file deleted), writes
succeed again and continue the seq exactly where the acknowledged facts stopped; the
database reopens cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.errors import DiskFull
from edge_agent.ledger import Ledger, Tx
from tests.helpers.processes import quick_check

PAD = "x" * 3000


def _mount_small(directory: Path) -> str | None:
    """Mount a 2 MiB tmpfs at ``directory``; the reason it cannot be done, else None."""
    if os.geteuid() != 0:
        return "needs root to mount a size-limited tmpfs"
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)],
                            capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        return f"mount -t tmpfs failed: {result.stderr.strip()}"
    return None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "small"
    reason = _mount_small(directory)
    if reason is not None:
        pytest.skip(reason)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, timeout=30)


def fact(n: int) -> Callable[[Tx], int]:
    def op(tx: Tx) -> int:
        return tx.append("receipt", {"n": n, "ref": PAD, "lines": [{"sku": "A-1", "qty": 1}]},
                         stock=[("A-1", 1)]).seq

    return op


def events(db: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, payload FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(int(seq), int(json.loads(payload)["data"]["n"])) for seq, payload in rows]


async def test_disk_full_refuses_clearly_keeps_what_was_acknowledged_and_recovers(
        small_fs: Path) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * 1024 * 1024)
    db = small_fs / "ledger.db"
    ledger = Ledger.open(db, "S001")
    acked: dict[int, int] = {}  # fact number -> seq
    refused: list[BaseException] = []
    n = 0
    try:
        # single writes, then concurrent groups, until the disk is full
        for _ in range(2000):
            batch = list(range(n + 1, n + 1 + (1 if n < 100 else 8)))
            n = batch[-1]
            results = await asyncio.gather(*(ledger.write(fact(i)) for i in batch),
                                           return_exceptions=True)
            for number, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    refused.append(result)
                else:
                    acked[number] = result
            if refused:
                break
        assert refused, "the 2 MiB filesystem never filled up"
        assert all(isinstance(e, DiskFull) for e in refused), refused
        assert "disk is full" in str(refused[0])
        # still full: refused again, clearly, and nothing is recorded
        with pytest.raises(DiskFull):
            await ledger.write(fact(n + 1))
        n += 1
        # what was acknowledged is there, once, with gapless seqs
        assert quick_check(db) == "ok"
        stored = events(db)
        assert {num: seq for seq, num in stored} == acked
        assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))

        # space returns
        filler.unlink()
        seq = await ledger.write(fact(n + 1))
        assert seq == len(stored) + 1
        acked[n + 1] = seq
    finally:
        with contextlib.suppress(Exception):
            ledger.close()
    assert quick_check(db) == "ok"
    with Ledger.open(db, "S001") as reopened:
        seq = reopened.write_blocking(fact(n + 2))
        assert seq == len(acked) + 1
    assert [num for _, num in events(db)] == [*sorted(acked), n + 2]
