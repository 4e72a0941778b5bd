"""The ledger gives its caches back once central holds a drained backlog (issue 18)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.ledger import Ledger, Tx
from edge_agent.sync_adapter import RELEASE_AFTER_EVENTS, LedgerStorePort


async def _record(ledger: Ledger, n: int) -> None:
    def op(tx: Tx, count: int) -> None:
        for i in range(count):
            tx.append("sale", {"sale_id": f"s{i}", "lines": []})

    left = n
    while left:
        count = min(1000, left)
        await ledger.write(lambda tx, c=count: op(tx, c))
        left -= count


async def test_a_drained_backlog_releases_the_caches_once(tmp_path: Path) -> None:
    n = RELEASE_AFTER_EVENTS + 1
    with Ledger.open(tmp_path / "ledger.db", "S1") as ledger:
        await _record(ledger, n)
        port = LedgerStorePort(ledger)
        epoch = ledger.current_epoch
        # the outbox reads the backlog through the readers (their page caches fill)
        after = 0
        while (found := await port.event_range(epoch, after, max_events=1000,
                                               max_bytes=1 << 20)) is not None:
            after = found.last_seq
        assert after == n
        await port.mark_acked(epoch, 1)
        await port.mark_acked(epoch, n // 2)
        assert ledger.memory_releases == 0  # a burst, not yet caught up
        await port.mark_acked(epoch, n)
        assert ledger.memory_releases == 1
        await port.mark_acked(epoch, n)  # nothing new acked: nothing to give back
        assert ledger.memory_releases == 1
        # the ledger still reads and writes after the release
        await _record(ledger, 3)
        assert (await port.epochs())[-1].last_seq == n + 3


async def test_no_release_while_central_is_behind(tmp_path: Path) -> None:
    n = RELEASE_AFTER_EVENTS + 500
    with Ledger.open(tmp_path / "ledger.db", "S1") as ledger:
        await _record(ledger, n)
        port = LedgerStorePort(ledger)
        epoch = ledger.current_epoch
        await port.mark_acked(epoch, 1)
        await port.mark_acked(epoch, RELEASE_AFTER_EVENTS + 1)  # 10k acked, 499 to go
        assert ledger.memory_releases == 0
        await port.mark_acked(epoch, n)
        assert ledger.memory_releases == 1
