"""Command inbox (PROTOCOL §5.2): drop rules, cseq order, duplicates, gaps, resync gating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.ledger import Ledger
from edge_agent.sync_adapter import LedgerStorePort
from sync.inbox import CommandInbox, Drop, classify
from sync.messages import CommandBatch, Snapshot
from sync.wire import canonical_json

STORE = "S001"


def cmd(cseq: int, type_: str = "stock.adjust", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cseq": cseq, "id": f"c{cseq}", "type": type_, "ts": "2026-11-25T09:00:00.000Z",
        "data": kw.pop("data", {"reason": "replenishment"}),
    }
    out.update(kw)
    return out


def batch(*commands: dict[str, Any], store: str = STORE) -> bytes:
    return canonical_json({"v": 1, "store": store, "commands": list(commands)})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "invalid_json"),
        (b"[1,2]", "malformed"),
        (canonical_json({"v": 2, "store": STORE, "commands": [cmd(1)]}), "version"),
        (canonical_json({"v": "1", "store": STORE, "commands": [cmd(1)]}), "version"),
        (batch(cmd(1), store="S002"), "store"),
        (canonical_json({"v": 1, "store": STORE, "commands": []}), "malformed"),
        (batch(cmd(1), cmd(3)), "malformed"),
        (batch(*[cmd(i) for i in range(1, 1002)]), "malformed"),
        (b'{"v":1,"store":"S001","commands":[{"cseq":1.0}]}', "malformed"),
        (b" " * (1024 * 1024 + 1), "too_large"),
    ],
)
def test_classify_drops(payload: bytes, reason: str) -> None:
    assert classify(payload, STORE) == Drop(reason)


def test_classify_accepts_a_well_formed_batch() -> None:
    result = classify(batch(cmd(4), cmd(5, "mystery.type")), STORE)
    assert isinstance(result, CommandBatch)
    assert (result.first_cseq, result.last_cseq) == (4, 5)


@pytest.fixture
async def port(tmp_path: Path) -> Any:
    ledger = Ledger.open(tmp_path / "store.db", STORE)
    try:
        yield LedgerStorePort(ledger)
    finally:
        ledger.close()


async def resynced(port: LedgerStorePort, through: int = 0) -> None:
    await port.apply_snapshot(Snapshot(
        store=STORE, through_cseq=through, epochs={}, catalog=[], stock=[], reservations=[],
        count_requests=[],
    ))


def adjust(cseq: int, sku: str, delta: int) -> dict[str, Any]:
    return cmd(cseq, stock=[{"sku": sku, "delta": delta}])


async def on_hand(port: LedgerStorePort, sku: str) -> int:
    def read(conn: Any) -> int:
        row = conn.execute("SELECT on_hand FROM stock WHERE sku = ?", (sku,)).fetchone()
        return int(row[0]) if row else 0

    return await port.ledger.read(read)


async def test_new_database_applies_nothing_before_first_resync(port: LedgerStorePort) -> None:
    inbox = CommandInbox(port, resend_after=10)
    assert await port.needs_resync() == "new database"
    result = await inbox.handle_payload(batch(adjust(1, "A", 5)))
    assert result is not None
    assert result.ack is None
    assert await on_hand(port, "A") == 0
    assert await port.applied_cseq() == 0
    await resynced(port)
    result = await inbox.handle_payload(batch(adjust(1, "A", 5)))
    assert result is not None
    assert result.ack == 1
    assert await on_hand(port, "A") == 5


async def test_in_order_duplicates_and_overlap_apply_once(port: LedgerStorePort) -> None:
    await resynced(port)
    inbox = CommandInbox(port, resend_after=10)
    r1 = await inbox.handle_payload(batch(adjust(1, "A", 5), adjust(2, "A", 7)))
    r2 = await inbox.handle_payload(batch(adjust(1, "A", 5), adjust(2, "A", 7)))  # duplicate
    r3 = await inbox.handle_payload(batch(adjust(2, "A", 7), adjust(3, "A", -1)))  # overlap
    assert [r.ack for r in (r1, r2, r3) if r] == [2, 2, 3]
    assert await on_hand(port, "A") == 11
    assert inbox.counters.duplicates == 1
    assert inbox.counters.commands_applied == 3


async def test_gap_applies_nothing_and_acks_the_watermark(port: LedgerStorePort) -> None:
    await resynced(port)
    now = [0.0]
    inbox = CommandInbox(port, resend_after=1.0, clock=lambda: now[0])
    await inbox.handle_payload(batch(adjust(1, "A", 1)))
    result = await inbox.handle_payload(batch(adjust(3, "A", 100)))
    assert result is not None
    assert (result.ack, result.gap) == (1, True)
    assert await on_hand(port, "A") == 1
    # the gap is repaired by central's resend
    result = await inbox.handle_payload(batch(adjust(2, "A", 10), adjust(3, "A", 100)))
    assert result is not None
    assert result.ack == 3
    assert await on_hand(port, "A") == 111
    assert not inbox.gap_expired()


async def test_persisting_gap_triggers_a_resync(port: LedgerStorePort) -> None:
    await resynced(port)
    now = [0.0]
    inbox = CommandInbox(port, resend_after=1.0, clock=lambda: now[0])
    await inbox.handle_payload(batch(adjust(5, "A", 1)))
    now[0] = 2.9
    result = await inbox.handle_payload(batch(adjust(5, "A", 1)))
    assert result is not None
    assert result.resync is None
    assert inbox.gap_expired() is False
    now[0] = 3.0
    assert inbox.gap_expired()
    result = await inbox.handle_payload(batch(adjust(5, "A", 1)))
    assert result is not None
    assert (result.ack, result.resync) == (None, "command gap")
    assert await port.needs_resync() == "command gap"


async def test_resync_command_stops_the_batch_and_withholds_the_ack(
    port: LedgerStorePort,
) -> None:
    await resynced(port)
    inbox = CommandInbox(port, resend_after=10)
    result = await inbox.handle_payload(
        batch(adjust(1, "A", 1), cmd(2, "resync", data={}), adjust(3, "A", 50))
    )
    assert result is not None
    assert (result.ack, result.resync) == (None, "command")
    assert await port.applied_cseq() == 2
    assert await on_hand(port, "A") == 1
    assert await port.needs_resync() == "resync command"
    # nothing more is applied until the resync succeeded
    result = await inbox.handle_payload(batch(adjust(3, "A", 50)))
    assert result is not None
    assert result.ack is None
    assert await on_hand(port, "A") == 1


async def test_digest_through_seq_covers_every_recorded_event(port: LedgerStorePort) -> None:
    """An op that appends and then runs SQL must not make the digest claim fewer events
    than its stock contains (central would report a false stock_mismatch)."""
    def op(tx: Any) -> None:
        tx.append("sale", {"sale_id": "x"}, stock=[("A", -1)])
        tx.set_meta("something", "1")

    await port.ledger.write(op)
    digest = await port.digest_state()
    assert (digest.through_seq, digest.skus) == (1, 1)
    assert (await port.epochs())[-1].last_seq == 1
