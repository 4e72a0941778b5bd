"""Recalls at central: /v1/recalls issues recall.add / recall.lift (malformed -> 422, never
sent), lists what each store holds, and counts the stores' recall.blocked events."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner

from central.cli import main
from tests.central.conftest import Central, FakeStore, wait_until

GTIN = "09506000134352"


def test_issue_list_block_and_lift(central: Central,
                                   make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth(applied_cseq=0)
    store.command_ack(0)
    make_store("S002").birth(applied_cseq=0)
    wait_until(lambda: len(central.get("/v1/status")["stores"]) == 2, what="two stores")

    for bad in ({"gtin": GTIN}, {"gtin": GTIN, "lot": "A", "serial": "B"},
                {"gtin": "09506000134353", "lot": "A"}, {"gtin": GTIN, "lot": "has space"},
                {"gtin": GTIN, "lot": "L" * 21}, {"gtin": GTIN, "lot": "A", "color": "red"}):
        central.post("/v1/recalls", bad, expect=422)
    issued = central.post("/v1/recalls", {"gtin": GTIN[1:], "lot": "BADLOT",
                                          "recall_id": "R-1", "reason": "listeria"})
    assert issued["recall"]["gtin"] == GTIN
    assert sorted(i["store"] for i in issued["issued"]) == ["S001", "S002"]  # every store
    wait_until(lambda: [c["type"] for c in store.commands] == ["recall.add"], what="sent")
    assert store.commands[0]["data"] == {"recall_id": "R-1", "gtin": GTIN, "lot": "BADLOT",
                                         "reason": "listeria"}
    store.command_ack(1)

    def delivered() -> bool:
        (recall,) = central.get("/v1/recalls")["recalls"]
        return {s["store"]: s["delivered"] for s in recall["stores"]} == {
            "S001": True, "S002": False}

    wait_until(delivered, what="S001's ack")
    blocked = {"seq": 1, "id": "ev-b1", "type": "recall.blocked",
               "ts": "2026-12-04T10:00:00.000Z",
               "data": {"recall_id": "R-1", "gtin": GTIN, "lot": "BADLOT", "sku": "G-500",
                        "source": "sale", "terminal": "T1"}}
    store.send([blocked, {**blocked, "seq": 2, "id": "ev-b2"}])
    store.wait_ack(2)
    (recall,) = central.get("/v1/recalls")["recalls"]
    assert [(f["store"], f["attempts"]) for f in recall["found_at"]] == [("S001", 2)]
    alerts = central.alerts("recall_blocked")
    assert [(a["store"], a["detail"]["lot"]) for a in alerts] == [("S001", "BADLOT")] * 2
    snapshot = central.http.get("/v1/stores/S001/snapshot",
                                headers={"Authorization": "Bearer token-s001"}).json()
    assert snapshot["recalls"] == [
        {"recall_id": "R-1", "gtin": GTIN, "lot": "BADLOT", "reason": "listeria"}]

    lifted = central.http.delete("/v1/recalls/R-1", headers=central.admin)
    assert lifted.status_code == 200
    assert sorted(i["store"] for i in lifted.json()["issued"]) == ["S001", "S002"]
    wait_until(lambda: [c["type"] for c in store.commands][-1:] == ["recall.lift"],
               what="lift sent")
    assert central.get("/v1/recalls")["recalls"] == []
    assert central.http.delete("/v1/recalls/R-1", headers=central.admin).status_code == 404


def test_the_cli_needs_exactly_one_of_lot_or_serial() -> None:
    runner = CliRunner()
    for extra in ([], ["--lot", "A", "--serial", "B"]):
        result = runner.invoke(main, ["recall", "issue", "--gtin", GTIN, *extra,
                                      "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 2
        assert "exactly one of --lot or --serial" in result.output
