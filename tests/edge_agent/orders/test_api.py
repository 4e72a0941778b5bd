"""The fulfilment queue through the real local API (Unix socket, real SQLite ledger):
each step, each refusal and its stable code, the facts recorded and the stock they move."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_agent.api.conftest import Api, running_api
from tests.edge_agent.orders.helpers import assign, assign_data, cancel, command, stock_in
from tests.edge_agent.retail.seed import event_payloads, stock_table

A_SCAN = "5901234123457"
B_SCAN = "4006381333931"  # B-200
_keys = iter(range(1, 10**6))


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"ord-key-{next(_keys)}"}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ea-ord-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def api(short_dir: Path) -> AsyncIterator[Api]:
    async with running_api(short_dir) as running:
        stock_in(running.ledger, {"A-100": 10, "B-200": 5, "C-300": 4})
        yield running


async def post(api: Api, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return await api.client.post(path, json=body, headers=kw.pop("headers", None) or key(),
                                 **kw)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text
    assert response.json()["message"]


def order_events(api: Api) -> list[dict[str, Any]]:
    return [e for e in event_payloads(api.ledger)
            if e["type"].startswith("order.") or e["type"] in ("fulfilment",
                                                              "reservation.released")]


async def test_assign_lists_the_order_and_reserves(api: Api) -> None:
    assert assign(api.ledger, "W1", {"A-100": 2, "B-200": 1})[0] == "applied"
    assert stock_table(api.ledger)["A-100"] == (10, 2)
    listed = (await api.client.get("/v1/orders")).json()
    assert listed["count"] == 1
    got = listed["orders"][0]
    assert (got["order_id"], got["status"], got["fulfilment"]) == ("W1", "incoming", "pickup")
    assert [(x["sku"], x["qty"], x["picked"]) for x in got["lines"]] == [
        ("A-100", 2, 0), ("B-200", 1, 0)]
    assert got["lines"][0]["name"] == "Apple juice 1l"
    assert (await api.client.get("/v1/orders/W1")).json()["reservation_id"] == "ord-W1-1"
    refused(await api.client.get("/v1/orders/nope"), 404, "order_not_found")
    refused(await api.client.get("/v1/orders", params={"status": "bogus"}), 422,
            "validation_error")
    res = (await api.client.get("/v1/reservations/ord-W1-1")).json()
    assert (res["status"], res["order_ref"]) == ("open", "W1")
    # Nothing is sent to central for an assignment: the command itself is the record.
    assert order_events(api) == []


async def test_accept_is_one_fact_and_idempotent(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1})
    headers = {"Idempotency-Key": "accept-W1"}
    first = ok(await post(api, "/v1/orders/W1/accept", {"by": "ann"}, headers=headers))
    assert first["status"] == "accepted"
    assert first["event"]["type"] == "order.accepted"
    again = await post(api, "/v1/orders/W1/accept", {"by": "ann"}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    refused(await post(api, "/v1/orders/W1/accept", {"by": "bob"}, headers=headers), 409,
            "idempotency_conflict")
    refused(await post(api, "/v1/orders/W1/accept"), 409, "order_wrong_state")
    events = order_events(api)
    assert [e["type"] for e in events] == ["order.accepted"]
    assert events[0]["data"] == {"order_id": "W1", "reservation_id": "ord-W1-1", "by": "ann"}
    assert "reserve" not in events[0]
    refused(await api.client.post("/v1/orders/W1/accept"), 422, "validation_error")  # no key


async def test_expired_accept_by_does_not_block_the_store(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1}, accept_by="2020-01-01T00:00:00.000Z")
    assert (await api.client.get("/v1/orders/W1")).json()["accept_overdue"] is True
    assert ok(await post(api, "/v1/orders/W1/accept"))["status"] == "accepted"


async def test_reject_releases_the_reservation(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 2, "B-200": 1})
    refused(await post(api, "/v1/orders/W1/reject", {"reason": "lazy"}), 422,
            "validation_error")
    body = ok(await post(api, "/v1/orders/W1/reject", {"reason": "not_found"}))
    assert (body["status"], body["reason"]) == ("rejected", "not_found")
    assert stock_table(api.ledger)["A-100"] == (10, 0)
    assert stock_table(api.ledger)["B-200"] == (5, 0)
    [event] = order_events(api)
    assert event["type"] == "order.rejected"
    assert event["data"]["reason"] == "not_found"
    assert event["data"]["lines"] == [{"sku": "A-100", "qty": 2}, {"sku": "B-200", "qty": 1}]
    assert event["reserve"] == [{"sku": "A-100", "delta": -2}, {"sku": "B-200", "delta": -1}]
    assert (await api.client.get("/v1/reservations/ord-W1-1")).json()["status"] == "released"
    refused(await post(api, "/v1/orders/W1/accept"), 409, "order_closed")
    assert (await api.client.get("/v1/orders")).json()["count"] == 0
    assert (await api.client.get("/v1/orders", params={"status": "rejected"})).json()[
        "count"] == 1
    # Central re-brokers it here later: a new attempt, shown instead of the old one.
    assign(api.ledger, "W1", {"A-100": 2, "B-200": 1}, attempt=2)
    again = (await api.client.get("/v1/orders/W1")).json()
    assert (again["reservation_id"], again["status"]) == ("ord-W1-2", "incoming")
    assert stock_table(api.ledger)["A-100"] == (10, 2)


async def test_pick_by_scan_refuses_wrong_item_and_extra_quantity(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 2, "C-300": 1})
    refused(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}), 409, "order_wrong_state")
    ok(await post(api, "/v1/orders/W1/accept"))
    refused(await post(api, "/v1/orders/W1/pick", {"code": B_SCAN}), 409, "pick_wrong_item")
    refused(await post(api, "/v1/orders/W1/pick", {"code": "0000000000000"}), 422,
            "unknown_sku")
    first = ok(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}))
    assert first["status"] == "picking"
    assert first["event"] is None
    assert first["scanned"] == {"sku": "A-100", "qty": 1, "gtin": "05901234123457"}
    refused(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN, "qty": 2}), 409,
            "pick_exceeds_order")
    ok(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}))
    refused(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}), 409, "pick_exceeds_order")
    done = ok(await post(api, "/v1/orders/W1/pick", {"code": "CHOC"}))  # an alias
    assert done["status"] == "picked"
    assert done["event"]["type"] == "order.picked"
    events = order_events(api)
    assert [e["type"] for e in events] == ["order.accepted", "order.picked"]
    assert events[1]["data"]["lines"] == [
        {"sku": "A-100", "qty": 2, "gtin": "05901234123457"}, {"sku": "C-300", "qty": 1}]
    assert [x["picked"] for x in done["lines"]] == [2, 1]
    assert stock_table(api.ledger)["A-100"] == (10, 2)  # picking moves nothing yet


async def _to_ready(api: Api, order_id: str, scans: list[str], *, pack: bool = True) -> None:
    ok(await post(api, f"/v1/orders/{order_id}/accept"))
    for code in scans:
        ok(await post(api, f"/v1/orders/{order_id}/pick", {"code": code}))
    if pack:
        assert ok(await post(api, f"/v1/orders/{order_id}/pack", {"parcels": 1}))[
            "status"] == "packed"
    assert ok(await post(api, f"/v1/orders/{order_id}/ready"))["status"] == "ready"


async def test_collect_checks_the_pickup_code(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1, "B-200": 1}, code="4711")
    ok(await post(api, "/v1/orders/W1/accept"))
    refused(await post(api, "/v1/orders/W1/pack"), 409, "order_wrong_state")
    refused(await post(api, "/v1/orders/W1/ready"), 409, "order_wrong_state")
    for code in (A_SCAN, B_SCAN):
        ok(await post(api, "/v1/orders/W1/pick", {"code": code}))
    refused(await post(api, "/v1/orders/W1/collect", {"code": "4711"}), 409,
            "order_wrong_state")
    ok(await post(api, "/v1/orders/W1/pack", {"parcels": 1}))
    ok(await post(api, "/v1/orders/W1/ready"))
    assert (await api.client.get("/v1/orders/W1")).json()["pickup_code_required"] is True
    refused(await post(api, "/v1/orders/W1/collect"), 422, "pickup_code_required")
    refused(await post(api, "/v1/orders/W1/collect", {"code": "1234"}), 403,
            "pickup_code_wrong")
    refused(await post(api, "/v1/orders/W1/ship", {"tracking": "T"}), 409,
            "fulfilment_mismatch")
    body = ok(await post(api, "/v1/orders/W1/collect", {"code": "4711"}))
    assert body["status"] == "collected"
    assert stock_table(api.ledger)["A-100"] == (9, 0)
    assert stock_table(api.ledger)["B-200"] == (4, 0)
    events = order_events(api)
    assert [e["type"] for e in events] == ["order.accepted", "order.picked", "order.packed",
                                           "order.ready", "fulfilment"]
    handover = events[-1]
    assert handover["data"]["how"] == "collected"
    assert (handover["data"]["order_id"], handover["data"]["order_ref"]) == ("W1", "W1")
    assert handover["stock"] == handover["reserve"] == [
        {"sku": "A-100", "delta": -1}, {"sku": "B-200", "delta": -1}]
    assert "4711" not in str(event_payloads(api.ledger))
    assert (await api.client.get("/v1/reservations/ord-W1-1")).json()["status"] == "fulfilled"
    refused(await post(api, "/v1/orders/W1/reject", {"reason": "other"}), 409, "order_closed")
    history = (await api.client.get("/v1/orders/W1")).json()["history"]
    assert [h["status"] for h in history] == ["incoming", "accepted", "picking", "picked",
                                              "packed", "ready", "collected"]


async def test_ship_with_tracking(api: Api) -> None:
    assign(api.ledger, "S1", {"B-200": 2}, fulfilment="ship")
    await _to_ready(api, "S1", [B_SCAN, B_SCAN], pack=True)
    refused(await post(api, "/v1/orders/S1/collect"), 409, "fulfilment_mismatch")
    body = ok(await post(api, "/v1/orders/S1/ship", {"tracking": "PN-123"}))
    assert (body["status"], body["tracking"]) == ("shipped", "PN-123")
    handover = order_events(api)[-1]
    assert (handover["type"], handover["data"]["how"], handover["data"]["tracking"]) == (
        "fulfilment", "shipped", "PN-123")
    assert stock_table(api.ledger)["B-200"] == (3, 0)


async def test_cancel_while_incoming_releases(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 3})
    assert cancel(api.ledger, "W1")[0] == "applied"
    assert stock_table(api.ledger)["A-100"] == (10, 0)
    [event] = order_events(api)
    assert event["type"] == "reservation.released"
    assert event["data"] == {"reservation_id": "ord-W1-1", "reason": "cancelled",
                             "order_id": "W1", "lines": [{"sku": "A-100", "qty": 3}]}
    body = (await api.client.get("/v1/orders/W1")).json()
    assert body["status"] == "cancelled"
    assert body["history"][-1]["reason"] == "customer"
    refused(await post(api, "/v1/orders/W1/accept"), 409, "order_closed")
    # A second cancel (central resends after a restart) changes nothing.
    assert cancel(api.ledger, "W1")[0] == "ignored"
    assert len(order_events(api)) == 1


async def test_cancel_after_handover_is_ignored(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1})
    await _to_ready(api, "W1", [A_SCAN], pack=False)
    ok(await post(api, "/v1/orders/W1/collect"))
    before = event_payloads(api.ledger)
    assert cancel(api.ledger, "W1", reason="timeout") == ("ignored",
                                                           "order not open at this store")
    assert event_payloads(api.ledger) == before
    assert (await api.client.get("/v1/orders/W1")).json()["status"] == "collected"
    assert stock_table(api.ledger)["A-100"] == (9, 0)
    assert cancel(api.ledger, "never-here")[0] == "ignored"


async def test_cancel_mid_pick_releases(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 2})
    ok(await post(api, "/v1/orders/W1/accept"))
    ok(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}))
    assert cancel(api.ledger, "W1", reason="rebrokered")[0] == "applied"
    refused(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN}), 409, "order_closed")
    assert stock_table(api.ledger)["A-100"] == (10, 0)


async def test_plain_reservation_paths_do_not_bypass_the_order(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1})
    r = await post(api, "/v1/fulfilments", {"reservation_id": "ord-W1-1"})
    refused(r, 409, "reservation_is_order")
    # Central's plain reservation.cancel on the order's reservation: the order follows.
    api.ledger.write_blocking(lambda tx: command(
        tx, "reservation.cancel", {"reservation_id": "ord-W1-1"}))
    refused(await post(api, "/v1/orders/W1/accept"), 409, "order_closed")
    assert (await api.client.get("/v1/orders/W1")).json()["status"] == "cancelled"


async def test_malformed_assign_is_flagged_not_fatal(api: Api) -> None:
    status, reason = api.ledger.write_blocking(lambda tx: command(
        tx, "order.assign", {"order_id": "X", "lines": "nope"}))
    assert status == "flagged"
    assert reason is not None
    assert "order.assign" in reason
    status, reason = assign(api.ledger, "W1", {"A-100": 1})
    assert status == "applied"
    status, reason = assign(api.ledger, "W1", {"A-100": 1})  # same reservation_id again
    assert status == "flagged"
    assert reason is not None
    assert "duplicate" in reason
    assert (await api.client.get("/v1/orders")).json()["count"] == 1


async def test_restart_mid_pick_keeps_state(short_dir: Path) -> None:
    async with running_api(short_dir) as first:
        stock_in(first.ledger, {"A-100": 5})
        assign(first.ledger, "W1", {"A-100": 3})
        ok(await post(first, "/v1/orders/W1/accept"))
        ok(await post(first, "/v1/orders/W1/pick", {"code": A_SCAN, "qty": 2}))
    async with running_api(short_dir) as second:
        body = (await second.client.get("/v1/orders/W1")).json()
        assert (body["status"], body["lines"][0]["picked"]) == ("picking", 2)
        refused(await post(second, "/v1/orders/W1/pick", {"code": A_SCAN, "qty": 2}), 409,
                "pick_exceeds_order")
        done = ok(await post(second, "/v1/orders/W1/pick", {"code": A_SCAN}))
        assert done["status"] == "picked"
        assert done["event"]["type"] == "order.picked"
        assert stock_table(second.ledger)["A-100"] == (5, 3)


async def test_assign_with_float_coordinates_is_kept(api: Api) -> None:
    """PROTOCOL §2 has no floats; a central that sends ship_to.lat as 52.37 still gets its
    order queued (flagged, the coordinates kept as decimal strings)."""
    data = assign_data("S9", {"B-200": 1}, fulfilment="ship")
    data["ship_to"] = {"postcode": "1011", "lat": 52.37, "lon": 4.9}
    status, reason = api.ledger.write_blocking(lambda tx: command(
        tx, "order.assign", data, reserve=[("B-200", 1)]))
    assert status == "flagged"
    assert reason is not None
    assert "floating-point" in reason
    body = (await api.client.get("/v1/orders/S9")).json()
    assert body["ship_to"] == {"postcode": "1011", "lat": "52.37", "lon": "4.9"}
    assert body["status"] == "incoming"
    assert stock_table(api.ledger)["B-200"] == (5, 1)


async def test_pick_gs1_serials_and_replays(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 2})
    ok(await post(api, "/v1/orders/W1/accept"))
    gs1 = "0105901234123457" + "21SER1"  # (01) GTIN (21) serial
    headers = {"Idempotency-Key": "scan-1"}
    first = ok(await post(api, "/v1/orders/W1/pick", {"code": gs1}, headers=headers))
    assert first["picked"] == [{"sku": "A-100", "qty": 1, "gtin": "05901234123457",
                                "serial": "SER1"}]
    # the scanner's retry of the same scan picks nothing more
    again = await post(api, "/v1/orders/W1/pick", {"code": gs1}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await api.client.get("/v1/orders/W1")).json()["lines"][0]["picked"] == 1
    # the same unit scanned again under a new key is refused
    refused(await post(api, "/v1/orders/W1/pick", {"code": gs1}), 409, "pick_duplicate_serial")
    done = ok(await post(api, "/v1/orders/W1/pick", {"code": "0105901234123457" + "21SER2"}))
    assert done["status"] == "picked"
    picked = order_events(api)[-1]
    assert [line.get("serial") for line in picked["data"]["lines"]] == ["SER1", "SER2"]


async def test_card_data_is_never_a_pick(api: Api) -> None:
    assign(api.ledger, "W1", {"A-100": 1})
    ok(await post(api, "/v1/orders/W1/accept"))
    card = "4111111111111111"
    refused(await post(api, "/v1/orders/W1/pick", {"code": card}), 422, "card_data_rejected")
    dump = api.ledger.read_blocking(lambda conn: "".join(
        str(row) for table in ("orders", "idempotency_keys", "events")
        for row in conn.execute(f"SELECT * FROM {table}")))
    assert card not in dump


async def test_two_lines_of_one_sku(api: Api) -> None:
    data = assign_data("W1", {"A-100": 1})
    data["lines"] = [{"line_no": 1, "sku": "A-100", "qty": 2},
                     {"line_no": 2, "sku": "B-200", "qty": 1},
                     {"line_no": 3, "sku": "A-100", "qty": 1}]
    assert api.ledger.write_blocking(lambda tx: command(
        tx, "order.assign", data, reserve=[("A-100", 3), ("B-200", 1)]))[0] == "applied"
    ok(await post(api, "/v1/orders/W1/accept"))
    body = ok(await post(api, "/v1/orders/W1/pick", {"code": A_SCAN, "qty": 3}))
    assert [(x["line_no"], x["picked"]) for x in body["lines"]] == [(1, 2), (2, 0), (3, 1)]
    refused(await post(api, "/v1/orders/W1/reject", {"reason": "other", "note": "x" * 201}),
            422, "validation_error")
    rejected = ok(await post(api, "/v1/orders/W1/reject", {"reason": "no_staff"}))
    assert rejected["status"] == "rejected"
    assert stock_table(api.ledger)["A-100"] == (10, 0)


async def test_unusable_assign_still_releases_on_cancel(api: Api) -> None:
    """A malformed order.assign queues no order, but what it reserved can be cancelled."""
    status, reason = api.ledger.write_blocking(lambda tx: command(
        tx, "order.assign", {"order_id": "X1", "reservation_id": "ord-X1-1",
                             "fulfilment": "teleport", "lines": [{"sku": "A-100", "qty": 2}]},
        reserve=[("A-100", 2)]))
    assert status == "flagged"
    assert reason is not None
    assert "no order queued" in reason
    assert stock_table(api.ledger)["A-100"] == (10, 2)
    assert (await api.client.get("/v1/orders", params={"status": "all"})).json()["count"] == 0
    assert cancel(api.ledger, "X1")[0] == "applied"
    assert stock_table(api.ledger)["A-100"] == (10, 0)
    [event] = order_events(api)
    assert (event["type"], event["data"]["order_id"]) == ("reservation.released", "X1")
    assert cancel(api.ledger, "X1")[0] == "ignored"
