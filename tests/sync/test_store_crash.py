"""Crash test: a store process (ledger + StoreSync, recording facts) killed with SIGKILL at
random points, 20+ times, against a central that keeps running; afterwards every fact
the store committed arrived at central exactly once, in order, and stock agrees."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import TOKEN, PeerCentral, running_peer
from tests.helpers.progress import until_progress

REPO = str(Path(__file__).resolve().parents[2])
KILLS = int(os.environ.get("SYNC_CRASH_KILLS", "20"))


async def child_main(db: str, broker_url: str, central_url: str, mode: str) -> None:
    """The store process: record facts as fast as the ledger allows ("record") or only
    sync ("drain"); print each committed range of sale numbers to stdout."""
    from edge_agent.ledger import Ledger, Tx  # noqa: PLC0415 - child process only
    from edge_agent.sync_adapter import LedgerStorePort  # noqa: PLC0415
    from sync.store import StoreSync  # noqa: PLC0415
    from sync.store_settings import SyncSettings  # noqa: PLC0415

    ledger = Ledger.open(Path(db), "S001")
    port = LedgerStorePort(ledger)
    settings = SyncSettings(broker_url=broker_url, central_url=central_url,
                            central_token=TOKEN, resend_after=1.0, backoff_base=0.05,
                            backoff_max=0.5, batch_max_events=100, window_events=400)
    sync = StoreSync(settings, port)
    task = asyncio.create_task(sync.run(), name="child.sync")

    def next_number(tx: Tx) -> int:
        row = tx.query("SELECT value FROM meta WHERE key = 'crash_next'")
        return int(row[0][0]) if row else 0

    def record(tx: Tx) -> tuple[int, int]:
        first = next_number(tx)
        for n in range(first, first + 25):
            tx.append("sale", {"sale_id": f"sale-{n}"}, stock=[(f"SKU-{n % 7}", -1)])
        tx.set_meta("crash_next", str(first + 25))
        return first, first + 24

    if mode == "record":
        while True:
            first, last = await ledger.write(record)
            sys.stdout.write(f"C {first} {last}\n")
            sys.stdout.flush()
            await asyncio.sleep(0.005)
    else:
        await task


def _child_entry() -> None:
    asyncio.run(child_main(*sys.argv[2:6]))


async def start_child(db: Path, broker: Broker, peer: PeerCentral, mode: str) \
        -> asyncio.subprocess.Process:
    code = "import sys; from tests.sync.test_store_crash import _child_entry; _child_entry()"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "child", str(db), broker.url,
        f"http://127.0.0.1:{peer.http_port}", mode,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
    )


async def read_committed(proc: asyncio.subprocess.Process, committed: set[int],
                         started: asyncio.Event) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"C":
            committed.update(range(int(parts[1]), int(parts[2]) + 1))
            started.set()


@pytest.mark.chaos
@pytest.mark.slow
async def test_sigkill_the_store_20_times_nothing_lost_nothing_twice(
    broker: Broker, tmp_path: Path,
) -> None:
    rng = random.Random(20261125)
    db = tmp_path / "store" / "ledger.db"
    db.parent.mkdir()
    committed: set[int] = set()
    async with running_peer(broker) as peer:
        for kill in range(KILLS):
            proc = await start_child(db, broker, peer, "record")
            started = asyncio.Event()
            reader = asyncio.create_task(read_committed(proc, committed, started))
            # kill at a random point of a life that is recording (start-up takes a while
            # on a loaded machine, and a life that never got going tests nothing)
            # nothing to watch before the first commit: a start-up backstop only (the
            # child failing fast is seen by read_committed)
            async with asyncio.timeout(180):
                await started.wait()
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            if kill % 4 == 1:
                # central issues commands while the store comes and goes
                await peer.send("stock.adjust", {"reason": "replenishment"},
                                stock=[(f"SKU-{kill % 7}", 10)])
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await reader
        # last life: no new facts, let everything drain
        proc = await start_child(db, broker, peer, "drain")
        try:
            await _drained(peer, db)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()

    # every event central applied, per epoch, exactly once and in order
    by_epoch: dict[str, list[int]] = {}
    for epoch, seq, _ in peer.applied_events:
        by_epoch.setdefault(epoch, []).append(seq)
    for seqs in by_epoch.values():
        assert seqs == list(range(1, len(seqs) + 1))
    assert peer.conflicts == 0
    # every fact the store reported committed arrived, none twice
    sale_ids = _applied_sale_numbers(db, peer)
    assert len(sale_ids) == len(set(sale_ids))
    assert committed <= set(sale_ids)
    assert len(committed) > 100
    # stock agrees, commands applied once each
    local = _local_stock(db)
    assert local == {s: (v[0], v[1]) for s, v in peer.stock.items() if v != [0, 0]}
    assert peer.store_cseq == len(peer.commands)
    # each killed life that had connected left its retained will: offline, its own boot_id
    births = {s["boot_id"] for s in peer.statuses if s["state"] == "online"}
    deaths = {s["boot_id"] for s in peer.statuses if s["state"] == "offline"}
    assert len(births) >= KILLS // 2
    assert len(deaths & births) >= len(births) - 2


async def _drained(peer: PeerCentral, db: Path) -> None:
    import sqlite3  # noqa: PLC0415

    def last_seq() -> tuple[str, int]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            epoch, ordinal = conn.execute(
                "SELECT epoch, ordinal FROM epochs ORDER BY ordinal DESC LIMIT 1").fetchone()
            (seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events "
                                  "WHERE epoch_ordinal = ?", (ordinal,)).fetchone()
            return str(epoch), int(seq)

    async def drained() -> bool:
        epoch, seq = await asyncio.to_thread(last_seq)
        return peer.applied.get(epoch, 0) >= seq and peer.store_cseq == len(peer.commands)

    async def progress() -> Hashable:
        return (await asyncio.to_thread(last_seq), tuple(peer.applied.items()),
                peer.store_cseq, peer.batches_received)

    # fail only when neither side moved for 30 s, however long draining takes
    await until_progress(drained, progress, 30.0, "the last life to drain", interval=0.1)


def _applied_sale_numbers(db: Path, peer: PeerCentral) -> list[int]:
    import sqlite3  # noqa: PLC0415

    with contextlib.closing(sqlite3.connect(db)) as conn:
        ids = dict(conn.execute("SELECT event_id, payload FROM events").fetchall())
    out: list[int] = []
    for _, _, event_id in peer.applied_events:
        payload: Any = ids[event_id]
        data = __import__("orjson").loads(payload)["data"]
        if "sale_id" in data:
            out.append(int(data["sale_id"].removeprefix("sale-")))
    return out


def _local_stock(db: Path) -> dict[str, tuple[int, int]]:
    import sqlite3  # noqa: PLC0415

    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT sku, on_hand, reserved FROM stock") if r[1] or r[2]}
