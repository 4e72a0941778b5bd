"""Each §5.1 command type applied in one ledger transaction with applied_cseq."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent import command_apply as cmds
from edge_agent.ledger import Ledger, Tx
from edge_agent.retail import reservations
from sync.wire import loads

STORE = "S001"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "store.db", STORE) as opened:
        yield opened


def command(cseq: int, type_: str, data: Any = None, **lists: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"cseq": cseq, "id": f"cmd-{cseq}", "type": type_,
                           "ts": "2026-11-25T09:00:00.000Z", "data": data or {}}
    out.update(lists)
    return out


def apply(ledger: Ledger, c: dict[str, Any]) -> tuple[str, str | None]:
    return ledger.write_blocking(lambda tx: cmds.apply_command(tx, c))


def rows(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return ledger.read_blocking(lambda conn: [tuple(r) for r in conn.execute(sql, params)])


def stock(ledger: Ledger) -> dict[str, tuple[int, int]]:
    return {r[0]: (r[1], r[2])
            for r in rows(ledger, "SELECT sku, on_hand, reserved FROM stock") if r[1] or r[2]}


def events(ledger: Ledger) -> list[dict[str, Any]]:
    return [loads(r[0]) for r in rows(ledger, "SELECT payload FROM events ORDER BY id")]


def applied(ledger: Ledger) -> int:
    return int(rows(ledger, "SELECT value FROM meta WHERE key='applied_cseq'")[0][0])


def test_catalog_upsert_normalises_gtins_and_remove_deletes(ledger: Ledger) -> None:
    item = {"sku": "A-100", "name": "Mug", "gtins": ["4006381333931", "12345670", "bad"],
            "price": "12.90", "currency": "EUR", "uom": "unit", "active": True, "color": "red"}
    status, reason = apply(ledger, command(1, "catalog.upsert", {"items": [item]}))
    assert status == "flagged"  # the bad GTIN is reported, the rest applied
    assert reason is not None
    assert "bad" in reason
    assert rows(ledger, "SELECT gtin, sku FROM catalog_gtins ORDER BY gtin") == [
        ("00000012345670", "A-100"), ("04006381333931", "A-100")]
    name, extra = rows(ledger, "SELECT name, extra FROM catalog")[0]
    assert (name, json.loads(extra)) == ("Mug", {"color": "red"})
    assert apply(ledger, command(2, "catalog.remove", {"skus": ["A-100"]})) == ("applied", None)
    assert rows(ledger, "SELECT * FROM catalog") == []
    assert rows(ledger, "SELECT * FROM catalog_gtins") == []
    assert applied(ledger) == 2


def test_stock_adjust_and_out_of_order_is_ignored(ledger: Ledger) -> None:
    assert apply(ledger, command(1, "stock.adjust", {"reason": "replenishment"},
                                 stock=[{"sku": "A", "delta": 24}])) == ("applied", None)
    assert apply(ledger, command(3, "stock.adjust", stock=[{"sku": "A", "delta": 1}]))[0] == \
        "ignored"
    assert apply(ledger, command(1, "stock.adjust", stock=[{"sku": "A", "delta": 1}]))[0] == \
        "ignored"
    assert stock(ledger) == {"A": (24, 0)}
    assert applied(ledger) == 1


def test_reservation_create_then_cancel_releases_remaining(ledger: Ledger) -> None:
    lines = [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]
    assert apply(ledger, command(
        1, "reservation.create", {"reservation_id": "R1", "order_ref": "O1", "lines": lines},
        reserve=[{"sku": "A", "delta": 2}, {"sku": "B", "delta": 1}],
    )) == ("applied", None)
    assert stock(ledger) == {"A": (0, 2), "B": (0, 1)}
    assert apply(ledger, command(2, "reservation.cancel", {"reservation_id": "R1"})) == \
        ("applied", None)
    assert stock(ledger) == {}
    (released,) = events(ledger)
    assert released["type"] == "reservation.released"
    assert released["data"] == {"reservation_id": "R1", "reason": "cancelled", "lines": lines}
    assert released["reserve"] == [{"sku": "A", "delta": -2}, {"sku": "B", "delta": -1}]
    # a second cancel, and a cancel of a fulfilled reservation, are ignored
    assert apply(ledger, command(3, "reservation.cancel", {"reservation_id": "R1"}))[0] == \
        "ignored"
    assert len(events(ledger)) == 1
    assert applied(ledger) == 3


def test_cancel_of_a_fulfilled_reservation_is_ignored(ledger: Ledger) -> None:
    apply(ledger, command(1, "reservation.create",
                          {"reservation_id": "R1", "order_ref": "O1",
                           "lines": [{"sku": "A", "qty": 1}]},
                          reserve=[{"sku": "A", "delta": 1}]))

    def fulfil(tx: Tx) -> None:
        data = {"reservation_id": "R1", "order_ref": "O1", "lines": [{"sku": "A", "qty": 1}]}
        ev = tx.append("fulfilment", data, stock=[("A", -1)], reserve=[("A", -1)])
        reservations.close_from_event(tx, "fulfilment", data, ev.seq)

    ledger.write_blocking(fulfil)
    assert apply(ledger, command(2, "reservation.cancel", {"reservation_id": "R1"}))[0] == \
        "ignored"
    assert stock(ledger) == {"A": (-1, 0)}
    assert rows(ledger, "SELECT status, cancel_requested FROM reservations") == [("fulfilled", 1)]


def test_malformed_lists_are_quarantined(ledger: Ledger) -> None:
    status, reason = apply(ledger, command(1, "stock.adjust",
                                           stock=[{"sku": "A", "delta": 1.5}]))
    assert status == "quarantined"
    status2, _ = apply(ledger, command(2, "reservation.cancel", {"reservation_id": "R"},
                                       reserve=[{"sku": "A", "delta": -1}]))
    assert status2 == "quarantined"
    status3, _ = apply(ledger, command(3, "stock.adjust", stock={"sku": "A"}))
    assert status3 == "quarantined"
    assert stock(ledger) == {}
    assert applied(ledger) == 3
    alerts = events(ledger)
    assert [e["data"]["kind"] for e in alerts] == ["command_quarantined"] * 3
    assert [e["data"]["cseq"] for e in alerts] == [1, 2, 3]
    assert rows(ledger, "SELECT cseq, status FROM commands") == [
        (1, "quarantined"), (2, "quarantined"), (3, "quarantined")]
    assert reason is not None


def test_unknown_type_is_stored_flagged_and_its_lists_applied(ledger: Ledger) -> None:
    status, reason = apply(ledger, command(1, "pricing.flash", {"x": 1},
                                           stock=[{"sku": "A", "delta": 3}]))
    assert status == "flagged"
    assert reason is not None
    assert stock(ledger) == {"A": (3, 0)}
    payload = rows(ledger, "SELECT payload FROM commands WHERE cseq = 1")[0][0]
    assert loads(payload)["type"] == "pricing.flash"


def test_count_request_and_resync(ledger: Ledger) -> None:
    assert apply(ledger, command(1, "count.request", {"count_id": "K1", "skus": ["A", "B"]})) \
        == ("applied", None)
    assert rows(ledger, "SELECT count_id, skus, status FROM count_requests") == [
        ("K1", '["A", "B"]', "open")]

    def count(tx: Tx) -> None:
        data = {"count_id": "K1", "lines": [{"sku": "A", "counted": 3, "expected": 0}]}
        ev = tx.append("count", data, stock=[("A", 3)])
        reservations.close_from_event(tx, "count", data, ev.seq)

    ledger.write_blocking(count)
    assert rows(ledger, "SELECT status FROM count_requests") == [("closed",)]
    ledger.write_blocking(lambda tx: tx.set_meta("resync_needed", "0"))
    assert apply(ledger, command(2, "resync")) == ("applied", None)
    assert rows(ledger, "SELECT value FROM meta WHERE key='resync_needed'") == [("1",)]


def test_expire_reservations_by_store_clock(ledger: Ledger) -> None:
    for cseq, (rid, expires) in enumerate(
        [("R1", "2026-11-25T10:00:00.000Z"), ("R2", "2026-11-25T12:00:00.000Z"), ("R3", None)],
        start=1,
    ):
        apply(ledger, command(cseq, "reservation.create",
                              {"reservation_id": rid, "order_ref": "O", "expires_at": expires,
                               "lines": [{"sku": "A", "qty": 1}]},
                              reserve=[{"sku": "A", "delta": 1}]))
    now = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert ledger.write_blocking(lambda tx: reservations.expire_reservations(tx, now)) == 1
    assert ledger.write_blocking(lambda tx: reservations.expire_reservations(tx, now)) == 0
    (ev,) = events(ledger)
    assert ev["data"]["reason"] == "expired"
    assert ev["data"]["reservation_id"] == "R1"
    assert stock(ledger) == {"A": (0, 2)}


@pytest.mark.parametrize(("code", "expected"), [
    ("4006381333931", "04006381333931"), ("12345670", "00000012345670"),
    ("012345678905", "00012345678905"), ("10012345678902", "10012345678902"),
    ("123", None), ("40063813339x1", None), ("٤٠٠٦٣٨١٣٣٣٩٣١", None),
])
def test_normalise_gtin(code: str, expected: str | None) -> None:
    assert cmds.normalise_gtin(code) == expected


def test_epoch_last_seq_stays_exact_after_appends_followed_by_sql(ledger: Ledger) -> None:
    """The outbox reads epochs.last_seq: an op that appends and then runs SQL (cancel,
    quarantine) must leave it equal to the last recorded seq."""
    apply(ledger, command(1, "reservation.create",
                          {"reservation_id": "R1", "order_ref": "O",
                           "lines": [{"sku": "A", "qty": 1}]},
                          reserve=[{"sku": "A", "delta": 1}]))
    apply(ledger, command(2, "reservation.cancel", {"reservation_id": "R1"}))
    apply(ledger, command(3, "stock.adjust", stock=[{"sku": "A", "delta": "x"}]))
    (last_seq,) = rows(ledger, "SELECT last_seq FROM epochs")[0]
    assert last_seq == 2
    assert rows(ledger, "SELECT max(seq) FROM events") == [(2,)]


def test_old_loyalty_commands_are_flagged_and_customers_commands_applied(
        tmp_path: Path) -> None:
    """The unkeyed loyalty extension is refused (flagged, cseq consumed); its keyed
    replacement, customers.* (docs/protocol.md §5.1), is applied."""
    tag_hash = hashlib.sha256(b"0A1B2C3D4E").hexdigest()
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        def run(command: dict[str, object]) -> tuple[str, str | None]:
            def op(tx: Tx) -> tuple[str, str | None]:
                status, reason = cmds.apply_command(tx, command)
                tx.set_applied_cseq(int(command["cseq"]))  # type: ignore[call-overload]
                return status, reason
            return ledger.write_blocking(op)

        old = run({"cseq": 1, "id": "c1", "type": "loyalty.upsert",
                   "ts": "2026-11-25T09:00:00.000Z",
                   "data": {"tags": [{"tag_hash": tag_hash, "customer": "CUST-42"}]}})
        assert old[0] == "flagged"
        assert "customers.upsert" in str(old[1])
        key = run({"cseq": 2, "id": "c2", "type": "customers.key",
                   "ts": "2026-11-25T09:00:00.000Z",
                   "data": {"key_id": "k1", "key": "A" * 43}})
        assert key == ("applied", None)
        bad = run({"cseq": 3, "id": "c3", "type": "customers.upsert",
                   "ts": "2026-11-25T09:00:00.000Z", "data": {"key_id": "k1"}})
        assert bad[0] == "flagged"
        assert ledger.read_blocking(lambda c: c.execute(
            "SELECT value FROM meta WHERE key = 'applied_cseq'").fetchone()) is not None


def test_card_data_in_a_command_is_removed_before_anything_is_stored(tmp_path: Path) -> None:
    pan = "4111111111111111"
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        def run(command: dict[str, Any]) -> tuple[str, str | None]:
            def op(tx: Tx) -> tuple[str, str | None]:
                outcome = cmds.apply_command(tx, command)
                tx.set_applied_cseq(int(command["cseq"]))
                return outcome
            return ledger.write_blocking(op)

        status, reason = run({
            "cseq": 1, "id": "c1", "type": "stock.adjust", "ts": "2026-11-25T09:00:00.000Z",
            "data": {"reason": "replenishment", "ref": pan,
                     "note": f"paid with {pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}"},
            "stock": [{"sku": "A-1", "delta": 3}]})
        assert status == "flagged"
        assert reason is not None
        assert "card data removed from 2" in reason
        assert run({"cseq": 2, "id": "c2", "type": "catalog.upsert",
                    "ts": "2026-11-25T09:00:00.000Z",
                    "data": {"items": [{"sku": "COFFEE", "name": "Coffee", "price": "1.00",
                                        "currency": "EUR", "gtins": ["5901234123457"]}]}}
                   )[0] == "applied"  # a GTIN that passes a card's Luhn check is kept
        stored = ledger.read_blocking(lambda c: [bytes(r[0]) for r in c.execute(
            "SELECT payload FROM commands ORDER BY cseq")])
        on_hand = ledger.read_blocking(
            lambda c: c.execute("SELECT on_hand FROM stock WHERE sku='A-1'").fetchone()[0])
    assert on_hand == 3  # the stock movement itself is applied
    assert pan.encode() not in stored[0]
    assert b"4111 1111" not in stored[0]
    assert b"5901234123457" in stored[1]
