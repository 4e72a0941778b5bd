"""The store port hands sync the ledger's own values: one set of epoch and digest types,
no copying between twins."""

from __future__ import annotations

from pathlib import Path

from edge_agent.ledger import EpochInfo, Ledger
from edge_agent.sync_adapter import LedgerStorePort
from sync.store_port import DigestFigures, EpochMark


async def test_epochs_and_digest_are_the_sync_types(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        await ledger.write(lambda tx: tx.append("alert", {"kind": "test"}))
        port = LedgerStorePort(ledger)
        epochs = await port.epochs()
        assert all(isinstance(e, EpochMark) and isinstance(e, EpochInfo) for e in epochs)
        assert epochs[-1].epoch == ledger.current_epoch
        assert epochs[-1].last_seq == 1
        last = epochs[-1]
        assert isinstance(last, EpochInfo)
        assert last.ordinal >= 1
        digest = await port.digest_state()
        assert type(digest) is DigestFigures
        assert (digest.epoch, digest.through_seq) == (ledger.current_epoch, 1)
        assert digest == await ledger.digest_state()
