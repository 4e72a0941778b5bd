"""A writer process is SIGKILLed at random moments; every acknowledged fact survives."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[3]
KILLS = 20


def run_and_kill(path: Path, delay: float) -> list[str]:
    errors = path.with_suffix(".stderr")
    with errors.open("w") as err, subprocess.Popen(
        [sys.executable, "-m", "tests.edge_agent.ledger.writer_proc", str(path), "8"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        return _kill_after(proc, delay, errors)


def _kill_after(proc: subprocess.Popen[str], delay: float, errors: Path) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    first = proc.stdout.readline()
    assert first.strip() == "ready", first + errors.read_text()

    def drain() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=drain)
    reader.start()
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    # A line cut by the kill was never fully acknowledged to us.
    return [line for line in lines if line.endswith("\n")]


def test_acknowledged_facts_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    rng = random.Random(1234)
    acknowledged: dict[int, tuple[str, str, int, int]] = {}
    for _ in range(KILLS):
        for line in run_and_kill(path, rng.uniform(0.05, 0.4)):
            seq, event_id, sku, delta, n = line.split()
            acknowledged[int(seq)] = (event_id, sku, int(delta), int(n))

        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            events = {row[0]: orjson.loads(row[1]) for row in
                      conn.execute("SELECT seq, payload FROM events ORDER BY id")}
            stock = {r[0]: r[1] for r in conn.execute("SELECT sku, on_hand FROM stock")}
        finally:
            conn.close()
        # seqs are gapless and every acknowledged fact is there, byte for byte as told
        assert list(events) == list(range(1, len(events) + 1))
        for seq, (event_id, sku, delta, n) in acknowledged.items():
            event = events[seq]
            assert event["id"] == event_id
            assert event["stock"] == [{"sku": sku, "delta": delta}]
            assert event["data"]["n"] == n
        sums: Counter[str] = Counter()
        for event in events.values():
            for item in event["stock"]:
                sums[item["sku"]] += item["delta"]
        assert {k: v for k, v in stock.items() if v} == {k: v for k, v in sums.items() if v}
    assert len(acknowledged) > 100, "the writer should have acknowledged many facts"
