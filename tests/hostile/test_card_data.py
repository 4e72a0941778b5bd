"""Card data injected on every input path of a running agent process never lands anywhere.

PCI-DSS 3.3.1 forbids storing track data at all, and PROTOCOL §9 says no payload ever
carries card numbers. A real agent process (real ledger, real sync, real API on its Unix
socket, a serial scanner on a real pty) gets track-1 and track-2 swipes and Luhn-valid card
numbers through the scanner, through every API body that takes free text, and inside a
central command's ``data`` published on its MQTT commands topic. Afterwards the database
file, its WAL (copied while the agent still runs), the agent's log, and every MQTT payload
the store published contain none of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.processes import AgentProcess, CentralProcess, wait_until
from tests.hostile.test_mqtt_hostile import RawClient

STORE = "S001"
T = f"retail/v1/stores/{STORE}"
PANS = ["4111111111111111", "5555555555554444", "378282246310005"]
TRACK1 = "%B4111111111111111^DOE/JOHN^25121010000000000000?"
TRACK2 = ";5555555555554444=25121010000000000000?"
GROUPED = "4111 1111 1111 1111"
SECRETS = [*PANS, TRACK1, TRACK2, "DOE/JOHN", "25121010000000000000"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ea-card-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _leaks(blob: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in blob]


def run_agent_with_card_data(short_dir: Path, broker: Broker,
                             paths: set[str]) -> dict[str, list[str]]:
    """Feed card data through ``paths`` (scanner, api, mqtt); where it was found after."""
    master, slave = os.openpty()
    central = CentralProcess(short_dir / "central", broker.url, [STORE], resend_after=1.0)
    central.start()
    capture = RawClient(broker.port, subscribe="retail/#")
    agent = AgentProcess(short_dir / "agent", STORE, broker.url, central, extra_config=(
        '[[devices]]\nname = "till-1"\nkind = "serial_scanner"\n'
        f'port = "{os.ttyname(slave)}"\nsuffix = "CR"\nmode = "sale"\nterminal = "T1"\n'))
    agent.config.write_text(agent.config.read_text().replace('level = "warning"',
                                                             'level = "debug"'))
    try:
        agent.start(target=0, rate=1)
        central.api("POST", f"/v1/stores/{STORE}/catalog", json={"items": [
            {"sku": "A-1", "name": "thing", "gtins": ["5901234123457"], "price": "2.00",
             "currency": "EUR", "uom": "unit", "active": True}]})
        central.api("POST", f"/v1/stores/{STORE}/adjust", json={
            "reason": "replenishment", "lines": [{"sku": "A-1", "delta": 50}]})
        wait_until(lambda: agent.meta("applied_cseq") == "2", 30,
            "the agent applied central's first commands")

        # 1. the scanner: swipes typed into a keyboard-wedge field arrive like scans
        if "scanner" in paths:
            for code in (TRACK1, TRACK2, *PANS, GROUPED, "5901234123457"):
                os.write(master, code.encode() + b"\r")

        # 2. the API: card data in every free-text field of the write endpoints
        sock = agent.workdir / "api.sock"
        wait_until(sock.exists, 20, "the API socket")
        bodies = [
            ("/v1/receipts", {"ref": PANS[0], "lines": [{"sku": "A-1", "qty": 1}]}),
            ("/v1/receipts", {"ref": TRACK2, "lines": [{"sku": "A-1", "qty": 1}]}),
            ("/v1/sales", {"terminal": "T1", "customer": TRACK1,
                           "lines": [{"sku": "A-1", "qty": 1}]}),
            ("/v1/sales", {"terminal": "T1", "sale_id": PANS[1],
                           "lines": [{"sku": "A-1", "qty": 1}]}),
            ("/v1/sales", {"terminal": "T1", "lines": [{"barcode": PANS[2], "qty": 1}]}),
            ("/v1/adjustments", {"reason": "damage", "note": GROUPED,
                                 "lines": [{"sku": "A-1", "qty": -1}]}),
            ("/v1/counts", {"count_id": TRACK2, "lines": [{"sku": "A-1", "counted": 3}]}),
            ("/v1/transfers", {"to_store": "S002", "ref": TRACK1,
                               "lines": [{"sku": "A-1", "qty": 1}]}),
        ]
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as api:
            wait_until(lambda: _status_ok(api), 20, "the API answering")
            for i, (path, body) in enumerate(bodies if "api" in paths else []):
                r = api.post(path, json=body, headers={"Idempotency-Key": f"card-{i}"})
                assert r.status_code in (400, 422), (path, r.status_code, r.text)
                assert not _leaks(r.content), (path, r.text)
            ok = api.post("/v1/receipts", json={"ref": "DN-1", "lines": [
                {"sku": "A-1", "qty": 2}]}, headers={"Idempotency-Key": "card-ok"})
            assert ok.status_code == 201, ok.text
            if "scanner" in paths:
                # the swipes really were read, and rejected as card data by the driver
                wait_until(lambda: _card_rejects(api) >= 5, 20, "the scanner's card rejects")

        # 3. MQTT: a central command whose data carries card numbers and a swipe
        raw = RawClient(broker.port)
        try:
            card = {"ref": PANS[0], "note": TRACK1, "items": [TRACK2, GROUPED]}
            raw.publish(f"{T}/commands", orjson.dumps({"v": 1, "store": STORE, "commands": [{
                "cseq": 3, "id": "card-cmd", "type": "stock.adjust",
                "ts": "2026-11-25T09:15:02.123Z",
                "data": {"reason": "replenishment", **(card if "mqtt" in paths else {})},
                "stock": [{"sku": "A-1", "delta": 1}], "reserve": []}]}))
        finally:
            raw.close()
        wait_until(lambda: agent.meta("applied_cseq") == "3", 20,
            "the command with card data handled")
        # the scans were read (and the swipes rejected), the good receipt reached central
        wait_until(lambda: central.query(
            "SELECT count(*) FROM events WHERE store = ? AND type = 'receipt'",
            (STORE,))[0][0] >= 1, 20, "the receipt at central")
        time.sleep(1.0)
        wal = agent.db.with_name(agent.db.name + "-wal")
        wal_copy = wal.read_bytes() if wal.exists() else b""
    finally:
        agent.terminate()
        central.terminate()
        capture.close()
        os.close(master)
        os.close(slave)

    wal_after = wal.read_bytes() if wal.exists() else b""
    found = {
        "database": _leaks(agent.db.read_bytes()),
        "wal (live)": _leaks(wal_copy),
        "wal (after stop)": _leaks(wal_after),
        "agent log": _leaks(agent.log.read_bytes()),
        "central database": _leaks(central.db.read_bytes()),
    }
    with capture.lock:
        published = [(t, p) for t, p in capture.seen if not t.endswith("/commands")]
    found["mqtt payloads"] = sorted({s for _, p in published for s in _leaks(p)})
    assert published, "nothing captured from the store"
    return found


def test_card_data_from_the_scanner_and_the_api_is_never_stored_logged_or_published(
        short_dir: Path, broker: Broker) -> None:
    found = run_agent_with_card_data(short_dir, broker, {"scanner", "api"})
    assert not any(found.values()), found


def test_card_data_inside_a_central_command_is_never_stored(
        short_dir: Path, broker: Broker) -> None:
    found = run_agent_with_card_data(short_dir, broker, {"mqtt"})
    assert not any(found.values()), found


def _card_rejects(api: httpx.Client) -> int:
    items = api.get("/v1/devices").json()["items"]
    return sum(int(i.get("card_data_rejected", 0)) for i in items if i["name"] == "till-1")


def _status_ok(api: httpx.Client) -> bool:
    try:
        return api.get("/v1/status").status_code == 200
    except httpx.HTTPError:
        return False
