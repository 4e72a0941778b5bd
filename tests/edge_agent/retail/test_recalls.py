"""recall.add / recall.lift applied by the store in the command's transaction, a malformed
one flagged with an alert (never a crash), and a snapshot's recalls replacing the store's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import command_apply as cmds
from edge_agent.ledger import Ledger
from edge_agent.retail.catalog import conn_query
from edge_agent.retail.recalls import find_recall, list_recalls, replace_recalls

GTIN = "09506000134352"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "store.db", "S001") as opened:
        yield opened


def apply(ledger: Ledger, cseq: int, type_: str, data: Any) -> tuple[str, str | None]:
    command = {"cseq": cseq, "id": f"c{cseq}", "type": type_, "ts": "2026-12-04T10:00:00Z",
               "data": data}
    return ledger.write_blocking(lambda tx: cmds.apply_command(tx, command))


def events(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.read_blocking(lambda conn: [
        json.loads(bytes(r[0])) for r in conn.execute("SELECT payload FROM events")])


def recalls(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.read_blocking(lambda conn: list_recalls(conn_query(conn)))


def test_add_find_lift(ledger: Ledger) -> None:
    assert apply(ledger, 1, "recall.add", {"recall_id": "R-1", "gtin": GTIN,
                                           "lot": "L1"}) == ("applied", None)
    assert apply(ledger, 2, "recall.add", {"recall_id": "R-2", "gtin": GTIN,  # cseq 1 used
                                           "serial": "S1"}) == ("applied", None)

    def find(lot: str | None, serial: str | None) -> Any:
        return ledger.read_blocking(
            lambda conn: find_recall(conn_query(conn), GTIN, lot, serial))

    assert find("L1", None)["recall_id"] == "R-1"
    assert find("L2", "S1")["recall_id"] == "R-2"
    assert find("L2", "S2") is None
    assert find(None, None) is None
    assert apply(ledger, 3, "recall.lift", {"recall_id": "R-1"}) == ("applied", None)
    assert apply(ledger, 4, "recall.lift", {"recall_id": "R-404"}) == ("applied", None)
    assert [r["recall_id"] for r in recalls(ledger)] == ["R-2"]
    assert events(ledger) == []  # recalls are state, not facts


@pytest.mark.parametrize("data", [
    {"recall_id": "R-1", "gtin": GTIN, "lot": "BAD LOT WITH SPACES"},
    {"recall_id": "R-1", "gtin": GTIN, "lot": "L" * 40},
    {"recall_id": "R-1", "gtin": "12345", "lot": "L1"},
    {"recall_id": "R-1", "gtin": GTIN},
    {"gtin": GTIN, "lot": "L1"},
    None,
])
def test_a_malformed_recall_is_flagged_with_an_alert(ledger: Ledger, data: Any) -> None:
    status, reason = apply(ledger, 1, "recall.add", data)
    assert status == "flagged"
    assert reason is not None
    assert reason.startswith("recall.add: ")
    assert recalls(ledger) == []
    (alert,) = events(ledger)
    assert alert["type"] == "alert"
    assert alert["data"]["kind"] == "recall_command_invalid"
    assert alert["data"]["cseq"] == 1
    assert apply(ledger, 2, "recall.add", {"recall_id": "R-2", "gtin": GTIN,  # cseq 1 used
                                           "lot": "L1"}) == ("applied", None)


def test_a_snapshot_replaces_the_recalls(ledger: Ledger) -> None:
    apply(ledger, 1, "recall.add", {"recall_id": "R-OLD", "gtin": GTIN, "lot": "L0"})
    kept = ledger.write_blocking(lambda tx: replace_recalls(tx, [
        {"recall_id": "R-NEW", "gtin": GTIN, "serial": "S9", "reason": "r"},
        {"recall_id": "R-BAD", "gtin": GTIN, "lot": "no spaces allowed"}]))
    assert kept == 1
    assert [(r["recall_id"], r["serial"]) for r in recalls(ledger)] == [("R-NEW", "S9")]
    assert [e["data"]["kind"] for e in events(ledger)] == ["recall_command_invalid"]
