"""The proof of issue 13: a recall issued with ``edge-central recall issue`` reaches a
store over a real mosquitto, and the store's till refuses that lot from a scanner on a
real pty after the broker is stopped (offline); once the broker is back, central learns
which store still had the lot (``recall.blocked`` -> ``recall_blocked`` alert, and
``edge-central recall list``).  Real processes: mosquitto, ``edge-central serve``, the
agent (``tests.chaos.driver`` runs the real daemon), and the ``edge-central`` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.processes import REPO, AgentProcess, CentralProcess, wait_until

STORE = "S001"
GTIN = "09506000134352"
BAD = f"]d201{GTIN}17351231\x1d10BADLOT\x1d21S1"  # GS1 DataMatrix, recalled lot
GOOD = f"]d201{GTIN}17351231\x1d10GOODLOT\x1d21S2"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ea-recall-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def edge_central(central: CentralProcess, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "central", *args, "--url", central.url,
         "--token-file", str(central.admin_file)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def agent_events(agent: AgentProcess) -> list[dict[str, Any]]:
    return [json.loads(bytes(r[0])) for r in
            agent.query("SELECT payload FROM events ORDER BY id")]


def _answering(api: httpx.Client) -> bool:
    try:
        return api.get("/v1/status").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_a_recall_from_edge_central_blocks_the_lot_offline(short_dir: Path,
                                                            broker: Broker) -> None:
    master, slave = os.openpty()
    central = CentralProcess(short_dir / "central", broker.url, [STORE], resend_after=1.0)
    central.start()
    agent = AgentProcess(short_dir / "agent", STORE, broker.url, central, extra_config=(
        '[[devices]]\nname = "till-1"\nkind = "serial_scanner"\n'
        f'port = "{os.ttyname(slave)}"\nsuffix = "CR"\nmode = "sale"\nterminal = "T1"\n'))
    try:
        agent.start(target=0, rate=1)
        central.api("POST", f"/v1/stores/{STORE}/catalog", json={"items": [
            {"sku": "G-500", "name": "Yoghurt", "gtins": [GTIN], "price": "1.20",
             "currency": "EUR", "uom": "unit", "active": True}]})
        issued = edge_central(central, "recall", "issue", "--gtin", GTIN, "--lot", "BADLOT",
                              "--reason", "listeria", "--recall-id", "R-2026-01",
                              "--store", STORE)
        assert issued["recall"] == {"recall_id": "R-2026-01", "gtin": GTIN, "lot": "BADLOT",
                                    "reason": "listeria"}
        wait_until(lambda: agent.meta("applied_cseq") == "2", 30,
                   "the agent applied the catalog and the recall")
        assert agent.query("SELECT recall_id, gtin, lot FROM recalls") == [
            ("R-2026-01", GTIN, "BADLOT")]

        broker.stop()  # the store is offline from here on
        sock = agent.workdir / "api.sock"
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as api:
            wait_until(lambda: _answering(api), 20, "the agent's API")
            wait_until(lambda: api.get("/v1/status").json()["broker"]["connected"] is False,
                       30, "the agent to notice the broker is gone")
            os.write(master, BAD.encode("latin-1") + b"\r")
            os.write(master, GOOD.encode("latin-1") + b"\r")
            wait_until(lambda: api.get("/v1/baskets/T1").status_code == 200, 20,
                       "the good lot in the basket")
            wait_until(lambda: any(e["type"] == "recall.blocked"
                                   for e in agent_events(agent)), 20, "the blocked scan")
            basket = api.get("/v1/baskets/T1").json()
            by_api = api.post("/v1/baskets/T2/items", json={"code": BAD})
        assert [line["sku"] for line in basket["lines"]] == ["G-500"]  # the good lot only
        assert by_api.status_code == 422
        assert by_api.json()["code"] == "recalled"
        blocked = [e["data"] for e in agent_events(agent) if e["type"] == "recall.blocked"]
        assert [(b["recall_id"], b["lot"], b["terminal"]) for b in blocked] == [
            ("R-2026-01", "BADLOT", "T1"), ("R-2026-01", "BADLOT", "T2")]

        broker.start()  # back online: central learns where the lot still is
        wait_until(lambda: any(
            f["store"] == STORE and f["attempts"] == 2
            for r in edge_central(central, "recall", "list")["recalls"]
            for f in r["found_at"]), 60, "central counting the blocked attempts")
        listed = edge_central(central, "recall", "list")["recalls"]
        assert listed[0]["stores"] == [{"store": STORE, "cseq": 2, "delivered": True}]
        alerts = central.api("GET", "/v1/alerts", params={"kind": "recall_blocked"})["alerts"]
        assert {a["store"] for a in alerts} == {STORE}

        lifted = edge_central(central, "recall", "lift", "R-2026-01")
        assert lifted["issued"][0]["store"] == STORE
        wait_until(lambda: agent.meta("applied_cseq") == "3", 30, "the lift applied")
        assert agent.query("SELECT count(*) FROM recalls") == [(0,)]
    finally:
        agent.terminate()
        central.terminate()
        os.close(master)
        os.close(slave)
