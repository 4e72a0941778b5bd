"""Till-ready scanning (issue 13), through real ptys and through the API, same answers.

A scanner on a pty (drivers simulator, the real serial bytes) feeds the reader and the
scan modes as the daemon's router does; the same codes go to the local API over its Unix
socket.  Each case must give the same outcome both ways: the SKU added to the basket, or
the same stable refusal code.  Expiry (AI 17), best-before (AI 15) and recalls (AI 10 /
AI 21, held in the ledger from a ``recall.add`` command) are refused and recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers import open_reader
from drivers.events import DeviceEvent, RejectedInput, ScanEvent
from drivers.simulator import Simulator
from edge_agent.command_apply import apply_command
from edge_agent.config import SerialScannerDevice
from edge_agent.ledger import Ledger, Tx
from edge_agent.retail.scanmodes import ScanModes
from edge_agent.till_config import RcnLayoutEntry
from tests.edge_agent.api.conftest import Api, running_api, short_dir
from tests.edge_agent.retail.seed import device, event_payloads, until

__all__ = ["short_dir"]  # the fixture, re-exported for this module's tests

GTIN = "09506000134352"
FUTURE = "351231"  # 2035-12-31
PAST = "250101"  # 2025-01-01, past in any time zone today


def seed_till(ledger: Ledger) -> None:
    def op(tx: Tx) -> None:
        tx.execute("INSERT INTO catalog (sku, name, price, currency, uom, active, extra) "
                   "VALUES ('G-500', 'Yoghurt', '1.20', 'EUR', 'unit', 1, '{}'), "
                   "('W-231', 'Ham by weight', '0.02', 'EUR', 'g', 1, '{}')")
        tx.execute("INSERT INTO catalog_gtins (gtin, sku) VALUES (?, 'G-500'), "
                   "('02312345000002', 'W-231')", (GTIN,))
        for cseq, data in enumerate([
                {"recall_id": "R-LOT", "gtin": GTIN[1:], "lot": "BADLOT", "reason": "listeria"},
                {"recall_id": "R-SN", "gtin": GTIN, "serial": "SN-666"}], start=1):
            status, reason = apply_command(tx, {"cseq": cseq, "id": f"c{cseq}",
                                                "type": "recall.add", "ts": "t", "data": data})
            assert (status, reason) == ("applied", None)

    ledger.write_blocking(op)


@contextlib.asynccontextmanager
async def till_api(directory: Path) -> AsyncIterator[Api]:
    async with running_api(directory, store={"markdown_days": 3}) as api:
        seed_till(api.ledger)
        yield api


Outcome = tuple[str, str]  # ("ok", sku) or ("refused", code)


@contextlib.asynccontextmanager
async def pty_till(api: Api, sim: Simulator, dev: SerialScannerDevice
                   ) -> AsyncIterator[list[Outcome]]:
    """pty -> reader (default card filter) -> scan modes; outcomes from the hub and the
    reader's rejections, in order."""
    modes = ScanModes(api.services)
    queue: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    outcomes: list[Outcome] = []
    reader = open_reader(dev, queue.put_nowait)

    async def route() -> None:
        while True:
            event = await queue.get()
            if isinstance(event, ScanEvent):
                await modes.handle_scan(dev, event)
            elif isinstance(event, RejectedInput):
                outcomes.append(("refused", event.reason))

    async def watch(hub_queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        while True:
            topic, data = await hub_queue.get()
            if topic == "basket" and data.get("action") == "add":
                line = data["lines"][-1]
                outcomes.append(("ok", f"{line['sku']} x{line['qty']}"))
            elif topic == "scan_rejected":
                outcomes.append(("refused", data["reason"]))

    async with api.services.hub.subscribe({"basket", "scan_rejected"}) as hub_queue:
        tasks = [asyncio.create_task(reader.run(), name="driver[till].read"),
                 asyncio.create_task(route(), name="router[till]"),
                 asyncio.create_task(watch(hub_queue), name="watch[till]")]
        try:
            await until(lambda: reader.status.state == "connected")
            yield outcomes
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def api_outcome(api: Api, code: str) -> Outcome:
    response = await api.client.post("/v1/baskets/T-API/items", json={"code": code})
    body = response.json()
    if response.status_code == 201:
        line = body["lines"][-1]
        return ("ok", f"{line['sku']} x{line['qty']}")
    return ("refused", body["code"])


CASES: list[tuple[str, str, str, Outcome]] = [
    # id, AIM, code, expected
    ("ean13-readme", "]E0", "5901234123457", ("ok", "A-100 x1")),
    ("gs1-128-gs-middle", "]C1", f"01{GTIN}17{FUTURE}10ABC123\x1d21XYZ", ("ok", "G-500 x1")),
    ("datamatrix-gs-first-last", "]d2", f"\x1d01{GTIN}10LOT1\x1d17{FUTURE}\x1d",
     ("ok", "G-500 x1")),
    ("gs1-qr-digital-link", "]Q3", f"https://id.gs1.org/01/{GTIN}/10/ABC123?17={FUTURE}",
     ("ok", "G-500 x1")),
    ("digital-link-any-domain", "]Q1",
     f"HTTPS://Shop.Example.COM/p/01/{GTIN}/21/S9?17={FUTURE}", ("ok", "G-500 x1")),
    ("variable-weight-se", "]E0", "2302120012344", ("ok", "W-300 x1234")),
    ("variable-weight-issue", "", "2312345002501", ("ok", "W-231 x250")),
    ("expired-ai17", "]d2", f"01{GTIN}17{PAST}10ABC123", ("refused", "expired")),
    ("best-before-ai15", "]d2", f"01{GTIN}15{PAST}10ABC123",
     ("refused", "best_before_passed")),
    ("expired-digital-link", "]Q3", f"https://id.gs1.org/01/{GTIN}?17={PAST}",
     ("refused", "expired")),
    ("recalled-lot", "]d2", f"01{GTIN}17{FUTURE}10BADLOT", ("refused", "recalled")),
    ("recalled-serial-dl", "", f"https://id.gs1.org/01/{GTIN}/21/SN-666",
     ("refused", "recalled")),
    ("recalled-lot-hri", "", f"(01){GTIN}(10)BADLOT", ("refused", "recalled")),
    ("bad-date-251399", "]C1", f"01{GTIN}17251399\x1d10ABC", ("refused", "invalid_barcode")),
    ("bad-check-digit", "]E0", "5901234123456", ("refused", "invalid_barcode")),
    ("bad-digital-link", "]Q1", "https://id.gs1.org/01/09506000134353",
     ("refused", "invalid_barcode")),
    ("garbage", "", "garbage-!!", ("refused", "unknown_sku")),
    ("pan-in-text", "", "X4111111111111111", ("refused", "card_data_rejected")),
    ("track2", "", ";4111111111111111=25121010000000000?", ("refused", "card_data_rejected")),
]


@pytest.mark.parametrize("suffix", ["CR", "CRLF"])
async def test_every_case_same_outcome_on_the_pty_and_the_api(short_dir: Path,
                                                               suffix: str) -> None:
    async with till_api(short_dir) as api, Simulator(short_dir / "dev") as sim:
        sim.add_scanner("till", suffix=suffix)
        await sim.start()
        dev = device("till", "sale", terminal="T-PTY", port=sim.device_ports()["till"])
        async with pty_till(api, sim, dev) as outcomes:
            for index, (_, aim, code, _expected) in enumerate(CASES):
                sim.scan("till", code, aim=aim or None)
                await until(lambda n=index: len(outcomes) > n)
        via_api = [await api_outcome(api, aim + code) for _, aim, code, _ in CASES]
        events = event_payloads(api.ledger)
    expected = [case[3] for case in CASES]
    assert [(c[0], o) for c, o in zip(CASES, outcomes, strict=True)] == \
        [(c[0], e) for c, e in zip(CASES, expected, strict=True)]
    assert [(c[0], o) for c, o in zip(CASES, via_api, strict=True)] == \
        [(c[0], e) for c, e in zip(CASES, expected, strict=True)]
    blocked = [e["data"] for e in events if e["type"] == "recall.blocked"]
    assert sorted((b["recall_id"], b["terminal"]) for b in blocked) == [
        ("R-LOT", "T-API"), ("R-LOT", "T-API"), ("R-LOT", "T-PTY"), ("R-LOT", "T-PTY"),
        ("R-SN", "T-API"), ("R-SN", "T-PTY")]
    assert {b["gtin"] for b in blocked} == {GTIN}
    expired = [e["data"] for e in events
               if e["type"] == "alert" and e["data"]["kind"] == "expired_blocked"]
    assert sorted(x["date_kind"] for x in expired) == ["best_before", "best_before", "expiry",
                                                       "expiry", "expiry", "expiry"]
    text = repr(events)
    assert "4111111111111111" not in text


async def test_a_line_ends_at_cr_lf_or_crlf_whatever_the_suffix(short_dir: Path) -> None:
    async with till_api(short_dir) as api, Simulator(short_dir / "dev") as sim:
        sim.add_scanner("till", suffix="CR")
        await sim.start()
        dev = device("till", "sale", terminal="T1", port=sim.device_ports()["till"])
        async with pty_till(api, sim, dev) as outcomes:
            # LF-terminated, then CRLF, then CR; byte at a time for the last one
            sim.write("till", b"5901234123457\n5901234123457\r\n")
            for byte in b"2302120012344\r":
                sim.write("till", bytes([byte]))
            await until(lambda: len(outcomes) >= 3)
            sim.write("till", b"9" * 5000 + b"\r")  # oversize: refused, nothing glued
            sim.write("till", b"\x00\x01\x02garbage\x07\r")
            sim.write("till", b"5901234123457\r")
            await until(lambda: len(outcomes) >= 6)
    assert outcomes == [("ok", "A-100 x1"), ("ok", "A-100 x1"), ("ok", "W-300 x1234"),
                        ("refused", "oversize"), ("refused", "unknown_sku"), ("ok", "A-100 x1")]


async def test_warn_policy_sells_and_markdown_notices(short_dir: Path) -> None:
    async with running_api(short_dir, store={"expiry_policy": "warn", "markdown_days": 3650}
                           ) as api:
        seed_till(api.ledger)
        sold = await api.client.post("/v1/baskets/T1/items",
                                     json={"code": f"]d201{GTIN}17{PAST}10OK"})
        soon = await api.client.post("/v1/baskets/T1/items",
                                     json={"code": f"]d201{GTIN}17{FUTURE}10OK"})
        looked = await api.client.get("/v1/catalog/lookup",
                                      params={"code": f"]d201{GTIN}17{FUTURE}10BADLOT"})
    assert sold.status_code == 201
    assert sold.json()["notices"] == [{"code": "expired", "date": "2025-01-01"}]
    assert soon.json()["notices"][0]["code"] == "expiry_markdown"
    # a lookup never refuses: it says what the till would do
    body = looked.json()
    assert (body["sku"], body["batch"], body["expiry"]) == ("G-500", "BADLOT", "2035-12-31")
    assert body["notices"][0]["code"] == "recalled"


async def test_api_sale_refuses_a_recalled_line_with_its_index(short_dir: Path) -> None:
    async with till_api(short_dir) as api:
        held = (await api.client.get("/v1/recalls")).json()["recalls"]
        assert [(r["recall_id"], r.get("lot"), r.get("serial")) for r in held] == [
            ("R-LOT", "BADLOT", None), ("R-SN", None, "SN-666")]
        response = await api.client.post("/v1/sales", json={
            "terminal": "T1", "lines": [{"sku": "A-100"},
                                        {"barcode": f"]d201{GTIN}10BADLOT"}],
            "payments": [{"method": "cash", "amount": "10.00"}]},
            headers={"Idempotency-Key": "sale-1"})
        events = event_payloads(api.ledger)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "recalled", response.text
    assert "lines[1]" in response.json()["message"]
    assert [e["type"] for e in events].count("sale") == 0
    assert [e["type"] for e in events].count("recall.blocked") == 1



async def test_a_store_layout_reads_its_own_variable_measure_codes(short_dir: Path) -> None:
    layouts = (RcnLayoutEntry(prefix="23", measure="weight", value_digits=5, decimals=3),)
    async with running_api(short_dir, store={"rcn_region": "custom",
                                              "rcn_layouts": layouts}) as api:
        seed_till(api.ledger)
        added = await api.client.post("/v1/baskets/T1/items", json={"code": "2312345002501"})
        looked = await api.client.get("/v1/catalog/lookup", params={"code": "2312345002501"})
    assert added.status_code == 201, added.text
    assert (added.json()["lines"][-1]["sku"], added.json()["lines"][-1]["qty"]) == (
        "W-231", 250)
    assert (looked.json()["kind"], looked.json()["qty"]) == ("variable_weight", 250)


async def test_receive_count_and_lookup_modes_read_codes_the_same_way(short_dir: Path) -> None:
    bad = f"01{GTIN}17{FUTURE}10BADLOT"
    good = f"01{GTIN}17{PAST}\x1d10OLD"  # expired: may be received and counted, not sold
    async with till_api(short_dir) as api, Simulator(short_dir / "dev") as sim:
        for name in ("recv", "count", "look"):
            sim.add_scanner(name, suffix="LF")
        await sim.start()
        ports = sim.device_ports()
        devices = [device("recv", "receive", "T-R", ports["recv"]),
                   device("count", "count", "T-C", ports["count"]),
                   device("look", "lookup", "T-L", ports["look"])]
        got: list[tuple[str, dict[str, Any]]] = []
        topics = {"session", "scan_rejected", "lookup"}
        async with api.services.hub.subscribe(topics) as q, contextlib.AsyncExitStack() as stack:
            for dev in devices:
                await stack.enter_async_context(pty_till(api, sim, dev))
            for name in ("recv", "count", "look"):
                for code in (bad, good):
                    sim.scan(name, code, aim="]d2")
                    async with asyncio.timeout(20):
                        got.append(await q.get())
    summary = [(topic, data.get("reason") or data.get("action") or data.get("sku"))
               for topic, data in got]
    assert summary == [
        ("scan_rejected", "recalled"), ("session", "add"),  # receive
        ("session", "add"), ("session", "add"),  # count: a recalled lot can be counted
        ("lookup", "G-500"), ("lookup", "G-500")]  # lookup says, never refuses
    assert got[4][1]["notices"][0]["code"] == "recalled"
    assert got[5][1]["notices"] == [{"code": "expired", "date": "2025-01-01"}]
    assert (got[5][1]["batch"], got[5][1]["expiry"]) == ("OLD", "2025-01-01")
