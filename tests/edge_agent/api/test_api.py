"""The local API through a real Unix socket (serve_api in the test's loop, httpx over uds)."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from drivers.events import DeviceStatus
from edge_agent.api.app import create_app
from edge_agent.api.server import ApiServerError, serve_api
from edge_agent.errors import ConfigError
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from tests.edge_agent.api.conftest import Api, running_api
from tests.edge_agent.retail.seed import (
    SALE_BARCODE,
    add_count_request,
    add_reservation,
    config,
    event_payloads,
    open_ledger,
    stock_table,
    until,
)
from tests.helpers.ports import free_port

PAY = [{"method": "cash", "amount": "100.00"}]
_keys = iter(range(1, 10**6))


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{next(_keys)}"}


async def post(api: Api, path: str, body: Any, **kw: Any) -> httpx.Response:
    return await api.client.post(path, json=body, headers=kw.pop("headers", None) or key(), **kw)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["message"]
    assert "Traceback" not in response.text
    return dict(body)


# -- writes --------------------------------------------------------------------------------------
async def test_sale_replay_and_conflict(api: Api) -> None:
    body = {"terminal": "till-1", "lines": [{"barcode": SALE_BARCODE, "qty": 2}],
            "payments": [{"method": "card", "amount": "5.00"}], "customer": "LOY-9"}
    first = await post(api, "/v1/sales", body, headers={"Idempotency-Key": "abc"})
    assert first.status_code == 201
    sale = first.json()
    assert (sale["total"], sale["lines"][0]["gtin"]) == ("5.00", "05901234123457")
    again = await post(api, "/v1/sales", body, headers={"Idempotency-Key": "abc"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == sale
    other = await post(api, "/v1/sales", {**body, "customer": "LOY-8"},
                       headers={"Idempotency-Key": "abc"})
    assert_error(other, 409, "idempotency_conflict")
    assert [e["type"] for e in event_payloads(api.ledger)] == ["sale", "alert"]
    got = await api.client.get(f"/v1/sales/{sale['sale_id']}")
    assert got.json()["lines"][0]["qty"] == 2
    assert_error(await api.client.get("/v1/sales/nope"), 404, "sale_not_found")


async def test_every_write_endpoint(api: Api) -> None:
    r = await post(api, "/v1/receipts", {"ref": "ASN-7", "lines": [{"sku": "A-100", "qty": 10},
                                                                   {"sku": "B-200", "qty": 4}]})
    assert r.status_code == 201
    assert r.json()["event"]["seq"] == 1
    r = await post(api, "/v1/adjustments", {"reason": "damage",
                                            "lines": [{"sku": "A-100", "qty": -1}]})
    assert r.status_code == 201
    add_count_request(api.ledger, "CNT-9", ["B-200"])
    r = await post(api, "/v1/counts", {"count_id": "CNT-9",
                                       "lines": [{"sku": "B-200", "counted": 3}]})
    assert r.json()["lines"] == [{"sku": "B-200", "counted": 3, "expected": 4}]
    assert r.json()["closed_request"] is True
    r = await post(api, "/v1/transfers", {"to_store": "S002", "ref": "TR-1",
                                          "lines": [{"sku": "A-100", "qty": 2}]})
    assert r.status_code == 201
    sale = await post(api, "/v1/sales", {"terminal": "t", "lines": [{"sku": "A-100"}],
                                         "payments": PAY})
    r = await post(api, "/v1/returns", {"sale_id": sale.json()["sale_id"],
                                        "lines": [{"sku": "A-100", "qty": 1}]})
    assert r.json()["refund_total"] == "2.50"
    add_reservation(api.ledger, "R-1", {"A-100": 2})
    r = await post(api, "/v1/fulfilments", {"reservation_id": "R-1"})
    assert r.json()["status"] == "fulfilled"
    types = [e["type"] for e in event_payloads(api.ledger)]
    assert types == ["receipt", "adjustment", "count", "transfer.out", "sale", "return",
                     "fulfilment"]
    # +10 -1 -2 (transfer) -1 (sale) +1 (return) -2 (fulfilment)
    assert stock_table(api.ledger) == {"A-100": (5, 0), "B-200": (3, 0)}
    stock = (await api.client.get("/v1/stock/A-100")).json()
    assert (stock["on_hand"], stock["available"]) == (5, 5)
    listing = (await api.client.get("/v1/stock")).json()
    assert listing["totals"]["on_hand"] == 8
    low = (await api.client.get("/v1/stock/low", params={"threshold": 3})).json()
    assert "B-200" in [x["sku"] for x in low["items"]]
    moves = (await api.client.get("/v1/movements", params={"sku": "A-100"})).json()
    assert [m["type"] for m in moves["movements"]][:2] == ["fulfilment", "return"]
    res = (await api.client.get("/v1/reservations", params={"status": "fulfilled"})).json()
    assert [x["reservation_id"] for x in res["reservations"]] == ["R-1"]
    assert (await api.client.get("/v1/reservations/R-1")).json()["status"] == "fulfilled"
    look = (await api.client.get("/v1/catalog/lookup", params={"code": SALE_BARCODE})).json()
    assert (look["sku"], look["on_hand"]) == ("A-100", 5)


async def test_business_error_codes(api: Api) -> None:
    sale = {"terminal": "t", "lines": [{"sku": "A-100"}], "payments": PAY}
    assert_error(await post(api, "/v1/sales", {**sale, "lines": [{"sku": "ZZZ"}]}),
                 422, "unknown_sku")
    assert_error(await post(api, "/v1/sales", {**sale, "payments": [
        {"method": "cash", "amount": "2.49"}]}), 422, "payment_short")
    sold = (await post(api, "/v1/sales", sale)).json()
    assert_error(await post(api, "/v1/returns", {"sale_id": sold["sale_id"], "lines": [
        {"sku": "A-100", "qty": 2}]}), 409, "return_exceeds_sale")
    assert_error(await post(api, "/v1/fulfilments", {"reservation_id": "nope"}),
                 404, "reservation_not_found")
    add_reservation(api.ledger, "R-2", {"A-100": 1})
    assert_error(await post(api, "/v1/fulfilments", {"reservation_id": "R-2", "lines": [
        {"sku": "A-100", "qty": 2}]}), 409, "fulfilment_exceeds_reservation")
    assert (await post(api, "/v1/fulfilments", {"reservation_id": "R-2"})).status_code == 201
    assert_error(await post(api, "/v1/fulfilments", {"reservation_id": "R-2"}),
                 409, "reservation_closed")
    assert_error(await api.client.get("/v1/reservations/nope"), 404, "reservation_not_found")
    assert_error(await api.client.get("/v1/catalog/lookup", params={"code": "nothing"}),
                 422, "unknown_sku")
    assert_error(await api.client.get("/v1/catalog/lookup",
                                      params={"code": "4111111111111111"}),
                 422, "card_data_rejected")
    assert_error(await api.client.get("/v1/stock/bad%20sku"), 422, "invalid_sku")


async def test_returns_need_receipt(short_dir: Path) -> None:
    async with running_api(short_dir, store={"returns_without_receipt": False}) as api:
        r = await post(api, "/v1/returns", {"lines": [{"sku": "A-100", "qty": 1}]})
        assert_error(r, 403, "returns_need_receipt")


async def test_fact_rejected_when_the_fact_exceeds_the_protocol_limit(short_dir: Path) -> None:
    async with running_api(short_dir, max_body_bytes=1024 * 1024) as api:
        lines = [{"sku": f"{i:04d}-" + "X" * 59, "counted": 1} for i in range(1000)]
        r = await post(api, "/v1/counts", {"lines": lines})
        body = assert_error(r, 422, "fact_rejected")
        assert "65536" in body["message"]
        assert event_payloads(api.ledger) == []


async def test_ledger_unavailable_and_disk_full(short_dir: Path) -> None:
    async with running_api(short_dir) as api:
        pages = api.ledger.write_blocking(
            lambda tx: tx.conn.execute("PRAGMA page_count").fetchone()[0])
        api.ledger.write_blocking(
            lambda tx: tx.conn.execute(f"PRAGMA max_page_count = {pages}"))
        lines = [{"sku": f"SKU-{i}", "qty": 1} for i in range(100)]
        r = await post(api, "/v1/receipts", {"ref": "x" * 150, "lines": lines})
        assert_error(r, 507, "disk_full")
        assert event_payloads(api.ledger) == []
        api.ledger.close()
        r = await post(api, "/v1/receipts", {"lines": [{"sku": "A-100", "qty": 1}]})
        assert_error(r, 503, "ledger_unavailable")


class _Broken(RetailService):
    async def stock_item(self, sku: str) -> dict[str, Any]:
        raise RuntimeError(f"boom secret-internal-detail {sku}")


async def test_internal_error_is_json_without_trace(short_dir: Path) -> None:
    async with running_api(short_dir, retail_class=_Broken) as api:
        r = await api.client.get("/v1/stock/A-100")
        assert_error(r, 500, "internal_error")
        assert "secret-internal-detail" not in r.text
        assert (await api.client.get("/v1/status")).status_code == 200  # still serving


# -- validation and limits ------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "loc"), [
    ({"terminal": "t", "lines": [{"sku": "A-100", "qty": 1.0}]}, ["body", "lines", 0, "qty"]),
    ({"terminal": "t", "lines": [{"sku": "A-100", "qty": "2"}]}, ["body", "lines", 0, "qty"]),
    ({"terminal": "t", "lines": [{"sku": "A-100", "unit_price": 2.5}]},
     ["body", "lines", 0, "unit_price"]),
    ({"terminal": "t", "lines": [{"sku": "A-100"}], "payments": [{"method": "cash",
                                                                 "amount": "1e3"}]},
     ["body", "payments", 0, "amount"]),
    ({"terminal": "t", "lines": []}, ["body", "lines"]),
    ({"terminal": "t", "lines": [{"sku": "A-100"}], "extra": 1}, ["body", "extra"]),
    ({"terminal": "t", "lines": [{"sku": "A-100", "gtin": "05901234123457"}]},
     ["body", "lines", 0]),
])
async def test_malformed_bodies_get_422_with_field_paths(
    api: Api, body: dict[str, Any], loc: list[Any]
) -> None:
    r = await post(api, "/v1/sales", body)
    error = assert_error(r, 422, "validation_error")
    assert loc in [e["loc"] for e in error["errors"]]  # (payments, required, may come first)
    assert event_payloads(api.ledger) == []


async def test_card_data_is_refused_and_never_echoed(api: Api) -> None:
    pan = "4111111111111111"
    r = await post(api, "/v1/sales", {"terminal": "t", "lines": [{"sku": "A-100"}],
                                      "payments": PAY, "customer": pan})
    error = assert_error(r, 422, "card_data_rejected")
    assert error["errors"][0]["loc"] == ["body", "customer"]
    assert "card" in error["message"]
    assert pan not in r.text
    r = await post(api, "/v1/receipts", {"ref": f"paid by {pan[:4]} {pan[4:8]} {pan[8:12]} "
                                                f"{pan[12:]}", "lines": [{"sku": "A", "qty": 1}]})
    assert_error(r, 422, "card_data_rejected")
    assert pan[8:12] + " " + pan[12:] not in r.text
    r = await post(api, "/v1/sales", {"terminal": "t", "lines": [{"barcode": pan}],
                                      "payments": PAY})
    assert_error(r, 422, "card_data_rejected")
    assert pan not in r.text
    assert event_payloads(api.ledger) == []


async def test_missing_idempotency_key(api: Api) -> None:
    r = await api.client.post("/v1/receipts", json={"lines": [{"sku": "A-100", "qty": 1}]})
    error = assert_error(r, 422, "validation_error")
    assert error["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_body_size_limit_by_length_and_by_stream(api: Api) -> None:
    big = json.dumps({"lines": [{"sku": "A-100", "qty": 1}] * 300})
    assert len(big) > 4096
    r = await api.client.post("/v1/receipts", content=big, headers={
        **key(), "content-type": "application/json"})
    assert_error(r, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for i in range(0, len(big), 500):
            yield big[i:i + 500].encode()

    r = await api.client.post("/v1/receipts", content=chunks(), headers={
        **key(), "content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    small = json.dumps({"lines": [{"sku": "A-100", "qty": 1}]})

    async def small_chunks() -> AsyncIterator[bytes]:
        yield small[:10].encode()
        yield small[10:].encode()

    r = await api.client.post("/v1/receipts", content=small_chunks(), headers={
        **key(), "content-type": "application/json"})
    assert r.status_code == 201
    assert_error(await api.client.post("/v1/receipts", content="{nope", headers={
        **key(), "content-type": "application/json"}), 422, "invalid_json")


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert_error(await api.client.get("/v1/nothing"), 404, "not_found")
    assert_error(await api.client.put("/v1/sales"), 405, "method_not_allowed")


# -- baskets and sessions -------------------------------------------------------------------------
async def test_basket_endpoints(api: Api) -> None:
    assert_error(await api.client.get("/v1/baskets/T1"), 404, "basket_empty")
    r = await post(api, "/v1/baskets/T1/items", {"code": SALE_BARCODE})
    assert r.status_code == 201
    await post(api, "/v1/baskets/T1/items", {"sku": "C-300", "qty": 4})
    await post(api, "/v1/baskets/T1/items", {"sku": "B-200"})
    r = await api.client.delete("/v1/baskets/T1/items/3")
    assert [x["sku"] for x in r.json()["lines"]] == ["A-100", "C-300"]
    assert_error(await api.client.delete("/v1/baskets/T1/items/9"), 404,
                 "basket_line_not_found")
    basket = (await api.client.get("/v1/baskets/T1")).json()
    assert basket["total"] == "3.90"
    assert_error(await post(api, "/v1/baskets/T1/checkout", {"payments": [
        {"method": "card", "amount": "3.00"}]}), 422, "payment_short")
    r = await post(api, "/v1/baskets/T1/checkout", None, headers={"Idempotency-Key": "co-1"})
    assert r.status_code == 201
    assert r.json()["payments"] == [{"method": "cash", "amount": "3.90"}]
    again = await post(api, "/v1/baskets/T1/checkout", None, headers={"Idempotency-Key": "co-1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_error(await post(api, "/v1/baskets/T1/checkout", None), 409, "basket_empty")
    await post(api, "/v1/baskets/T2/items", {"sku": "A-100"})
    assert (await api.client.delete("/v1/baskets/T2")).json()["cancelled"] is True
    assert_error(await api.client.delete("/v1/baskets/T2"), 404, "basket_empty")
    assert [e["type"] for e in event_payloads(api.ledger)].count("sale") == 1


async def test_session_endpoints(api: Api) -> None:
    opened = (await post(api, "/v1/sessions", {"kind": "receive", "terminal": "dock",
                                               "ref": "ASN-1"})).json()
    sid = opened["session_id"]
    same = (await post(api, "/v1/sessions", {"kind": "receive", "terminal": "dock"})).json()
    assert same["session_id"] == sid
    await post(api, f"/v1/sessions/{sid}/items", {"code": SALE_BARCODE, "qty": 3})
    await post(api, f"/v1/sessions/{sid}/items", {"sku": "A-100"})
    listed = (await api.client.get("/v1/sessions")).json()["sessions"]
    assert listed[0]["lines"] == [{"sku": "A-100", "qty": 4}]
    closed = await post(api, f"/v1/sessions/{sid}/close", None)
    assert closed.json()["ref"] == "ASN-1"
    assert closed.json()["lines"] == [{"sku": "A-100", "qty": 4}]
    assert_error(await post(api, f"/v1/sessions/{sid}/close", None), 409, "session_closed")
    assert_error(await post(api, f"/v1/sessions/{sid}/items", {"sku": "A-100"}), 409,
                 "session_closed")
    count = (await post(api, "/v1/sessions", {"kind": "count", "terminal": "floor"})).json()
    assert (await api.client.delete(f"/v1/sessions/{count['session_id']}")).status_code == 200
    assert_error(await api.client.get("/v1/sessions/nope"), 404, "session_not_found")
    every = (await api.client.get("/v1/sessions", params={"status": "all"})).json()
    assert sorted(s["status"] for s in every["sessions"]) == ["cancelled", "closed"]
    assert stock_table(api.ledger) == {"A-100": (4, 0)}


# -- events stream --------------------------------------------------------------------------------
async def read_sse(response: httpx.Response, count: int) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    topic = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            topic = line[7:]
        elif line.startswith("data: "):
            events.append((topic, json.loads(line[6:])))
            if len(events) == count:
                break
    return events


async def test_sse_delivers_hub_items_by_topic(api: Api) -> None:
    hub = api.services.hub
    async with api.client.stream("GET", "/v1/events/stream",
                                 params={"topics": "scan,device"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        await until(lambda: hub.subscriber_count == 1)
        hub.publish("tag", {"tag": "ignored: not subscribed"})
        hub.publish("scan", {"device": "till-1", "code": "5901234123457"})
        hub.publish("device", {"device": "till-1", "state": "connected"})
        async with asyncio.timeout(5):
            events = await read_sse(response, 2)
    assert events == [("scan", {"device": "till-1", "code": "5901234123457"}),
                      ("device", {"device": "till-1", "state": "connected"})]
    await until(lambda: hub.subscriber_count == 0)  # the stream's subscription is gone


async def test_sse_without_topics_gets_everything(api: Api) -> None:
    hub = api.services.hub
    async with api.client.stream("GET", "/v1/events/stream") as response:
        await until(lambda: hub.subscriber_count == 1)
        hub.publish("presence", {"device": "ble-1", "present": True})
        hub.publish("basket", {"terminal": "T1", "lines": []})
        async with asyncio.timeout(5):
            events = await read_sse(response, 2)
    assert [topic for topic, _ in events] == ["presence", "basket"]


# -- status and ops -------------------------------------------------------------------------------
class _Sync:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def connected(self) -> bool:
        return True

    def request_sync_now(self) -> None:
        self.calls.append("now")

    def request_resync(self, reason: str) -> None:
        self.calls.append(f"resync:{reason}")

    def figures(self) -> dict[str, Any]:
        return {"connected": True, "last_ack_at": "2026-11-25T10:00:00.000Z", "reconnects": 3,
                "clock_offset_ms": -12}


async def test_status_outbox_devices_and_sync(api: Api) -> None:
    assert_error(await api.client.post("/v1/sync/now"), 503, "sync_not_configured")
    assert_error(await api.client.post("/v1/sync/resync"), 503, "sync_not_configured")
    status = (await api.client.get("/v1/status")).json()
    assert status["broker"] == {"connected": False, "last_ack_at": None, "reconnects": 0,
                                "stalled_s": 0.0, "last_error": None}
    await post(api, "/v1/receipts", {"lines": [{"sku": "A-100", "qty": 1}]})
    await post(api, "/v1/sales", {"terminal": "t", "lines": [{"sku": "B-200"}], "payments": PAY})
    sync = _Sync()
    api.services.sync = sync
    api.services.count("scans", 5)
    api.services.device_statuses = {
        "till-1": DeviceStatus(name="till-1", kind="serial_scanner", port="/dev/ttyUSB0",
                               state="connected", since=1.0, reads=9),
        "door-1": DeviceStatus(name="door-1", kind="door_counter", port="/dev/ttyUSB1",
                               state="error", since=1.0),
    }
    status = (await api.client.get("/v1/status")).json()
    expected_keys = {"state", "version", "store", "uptime_s", "boot_id", "epoch", "last_seq",
                     "applied_cseq", "resync_needed", "broker", "outbox", "devices",
                     "clock_offset_ms", "db", "counters"}
    assert set(status) == expected_keys
    assert status["store"] == "S001"
    assert status["last_seq"] == 3  # receipt, sale, oversold alert
    assert status["outbox"]["pending"] == 3
    assert status["outbox"]["oldest_age_s"] >= 0
    assert status["broker"] == {"connected": True, "last_ack_at": "2026-11-25T10:00:00.000Z",
                                "reconnects": 3, "stalled_s": 0.0, "last_error": None}
    assert status["clock_offset_ms"] == -12
    assert status["devices"]["connected"] == 1
    assert status["devices"]["total"] == 2
    assert status["counters"] == {"scans": 5}
    assert status["db"]["bytes"] > 0
    assert status["db"]["disk_free_bytes"] > 0
    outbox = (await api.client.get("/v1/outbox", params={"limit": 2})).json()
    assert outbox["pending"] == 3
    assert [(e["seq"], e["type"]) for e in outbox["events"]] == [(1, "receipt"), (2, "sale")]
    devices = (await api.client.get("/v1/devices")).json()
    assert [d["name"] for d in devices["items"]] == ["till-1", "door-1"]
    assert (await api.client.post("/v1/sync/now")).status_code == 202
    r = await api.client.post("/v1/sync/resync", json={"reason": "technician"})
    assert r.status_code == 202
    assert_error(await api.client.post("/v1/sync/resync", json={"reason": "4111111111111111"}),
                 422, "card_data_rejected")
    assert sync.calls == ["now", "resync:technician"]


async def test_metrics_per_app_registry(api: Api, short_dir: Path) -> None:
    await post(api, "/v1/receipts", {"lines": [{"sku": "A-100", "qty": 1}]})
    api.services.count("scan_rejected", 2)
    text = (await api.client.get("/metrics")).text
    assert 'edge_agent_api_requests_total{method="POST",route="/v1/receipts",status="201"} 1.0' \
        in text
    assert "edge_agent_outbox_pending_events 1.0" in text
    assert 'edge_agent_counter{name="scan_rejected"} 2.0' in text
    assert "edge_agent_disk_free_bytes " in text
    assert "edge_agent_outbox_oldest_age_seconds " in text
    api.services.sync = _Sync()
    api.services.device_statuses = {"till-1": DeviceStatus(
        name="till-1", kind="serial_scanner", port="/dev/ttyACM0", state="connected",
        since=1.0, reads=7, reconnects=2)}
    text = (await api.client.get("/metrics")).text
    assert 'edge_agent_sync{name="reconnects"} 3.0' in text
    assert 'edge_agent_sync{name="clock_offset_ms"} -12.0' in text
    assert 'edge_agent_device{device="till-1",figure="reads"} 7.0' in text
    assert 'edge_agent_device{device="till-1",figure="reconnects"} 2.0' in text
    # another app in the same process has its own registry (no duplicate-metric error)
    ledger = open_ledger(short_dir / "other.db")
    try:
        other = create_app(AgentServices(config=config(), ledger=ledger))
        assert other.state.metrics.registry is not api.app.state.metrics.registry
        fresh = generate_latest(other.state.metrics.registry).decode()
        assert 'route="/v1/receipts"' not in fresh
    finally:
        ledger.close()


async def test_visitors_report_counts_api_sales(api: Api) -> None:
    await post(api, "/v1/sales", {"terminal": "t", "lines": [{"sku": "A-100"}], "payments": PAY})
    today = (await api.client.get("/v1/visitors/today")).json()
    assert today["sales"] == 1


async def test_openapi_and_docs(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/sales", "/v1/returns", "/v1/receipts", "/v1/adjustments", "/v1/counts",
                 "/v1/transfers", "/v1/fulfilments", "/v1/reservations", "/v1/stock",
                 "/v1/catalog/lookup", "/v1/baskets/{terminal}/checkout", "/v1/events/stream",
                 "/v1/status", "/v1/outbox", "/v1/sync/now", "/v1/sync/resync", "/v1/devices",
                 "/metrics"):
        assert path in spec["paths"], path
    sale_schema = spec["components"]["schemas"]["SaleRequest"]
    assert "lines" in sale_schema["required"]
    assert (await api.client.get("/docs")).status_code == 200


# -- listeners ------------------------------------------------------------------------------------
async def test_socket_mode_stale_file_and_tcp_token(short_dir: Path) -> None:
    sock_path = short_dir / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # a socket file nobody listens on: what a killed agent leaves
    token_file = short_dir / "token"
    token_file.write_text("s3cret-token\n")
    port = free_port()
    group = grp.getgrgid(os.getgid()).gr_name
    async with running_api(short_dir, socket_mode="0640", socket_group=group,
                           tcp={"port": port, "token_file": str(token_file)}) as api:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o640
        assert os.stat(sock_path).st_gid == os.getgid()
        assert (await api.client.get("/v1/status")).status_code == 200  # no token on the socket
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as tcp:
            assert_error(await tcp.get("/v1/status"), 401, "unauthorized")
            assert_error(await tcp.get("/v1/status", headers={
                "Authorization": "Bearer wrong"}), 401, "invalid_token")
            ok = await tcp.get("/v1/status", headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200
            r = await tcp.post("/v1/receipts", json={"lines": [{"sku": "A-100", "qty": 1}]},
                               headers={"Authorization": "Bearer s3cret-token", **key()})
            assert r.status_code == 201
        # a second server on the same live socket is refused, the first one keeps serving
        second = AgentServices(config=api.services.config, ledger=api.ledger)
        with pytest.raises(ApiServerError, match="in use"):
            await serve_api(create_app(second), api.services.config.api)
        assert (await api.client.get("/v1/status")).status_code == 200
    assert not sock_path.exists()  # removed on cancellation


async def test_unknown_socket_group_is_a_config_error(short_dir: Path) -> None:
    ledger = open_ledger(short_dir / "l.db")
    try:
        cfg = config(api={"socket": str(short_dir / "api.sock"),
                          "socket_group": "no-such-group-here"})
        with pytest.raises(ConfigError, match="no-such-group-here"):
            await serve_api(create_app(AgentServices(config=cfg, ledger=ledger)), cfg.api)
    finally:
        ledger.close()


async def test_not_a_socket_is_not_replaced(short_dir: Path) -> None:
    path = short_dir / "api.sock"
    path.write_text("precious")
    ledger = open_ledger(short_dir / "l.db")
    try:
        cfg = config(api={"socket": str(path)})
        with pytest.raises(ApiServerError, match="not a socket"):
            await serve_api(create_app(AgentServices(config=cfg, ledger=ledger)), cfg.api)
        assert path.read_text() == "precious"
    finally:
        ledger.close()
