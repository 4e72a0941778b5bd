"""``/v1/rfid`` and sales by EPC through the agent's real API app on its Unix socket."""

from __future__ import annotations

from typing import Any

from tests.edge_agent.rfid.conftest import GTINS, SKUS, epc_hex, serving


async def test_count_over_http(make_rig: Any) -> None:
    rig = await make_rig()
    async with serving(rig) as api:
        r = await api.post("/v1/receipts", headers={"Idempotency-Key": "r1"},
                           json={"lines": [{"sku": SKUS[0], "qty": 3}]})
        assert r.status_code == 201
        r = await api.post("/v1/rfid/counts", json={"zones": ["floor"], "count_id": "c-1"})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "open"
        for n in range(4):
            rig.tag("floor-1", epc_hex(GTINS[0], n))
        # A sale by EPC alone through the fast path: the serial is recorded.
        r = await api.post("/v1/sales", headers={"Idempotency-Key": "s1"}, json={
            "terminal": "T1", "lines": [{"epc": epc_hex(GTINS[0], 3)}],
            "payments": [{"method": "card", "amount": "19.90"}]})
        assert r.status_code == 201, r.text
        assert r.json()["lines"][0]["serial"] == "3"
        progress = (await api.get("/v1/rfid/counts/c-1")).json()
        assert progress["tags"] == 4
        r = await api.post("/v1/rfid/counts/c-1/close")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lines"] == [{"sku": SKUS[0], "counted": 3, "expected": 2, "variance": 1}]
        assert (await api.post("/v1/rfid/counts/c-1/close")).json() == body
        listed = (await api.get("/v1/rfid/counts")).json()["counts"]
        assert [c["status"] for c in listed] == ["closed"]
        accuracy = (await api.get("/v1/rfid/accuracy", params={"sku": SKUS[0]})).json()
        assert accuracy["skus"][0]["variance"] == 1
        assert accuracy["skus"][0]["last_counted_at"] == body["counted_at"]


async def test_errors_have_stable_codes(make_rig: Any) -> None:
    rig = await make_rig()
    async with serving(rig) as api:
        cases: list[tuple[str, str, Any, int, str]] = [
            ("POST", "/v1/rfid/counts", {"zones": ["attic"]}, 422, "unknown_zone"),
            ("POST", "/v1/rfid/counts", {"zones": ["no spaces"]}, 422, "validation_error"),
            ("POST", "/v1/rfid/counts", {"zones": []}, 422, "validation_error"),
            ("POST", "/v1/rfid/counts", {"bogus": 1}, 422, "validation_error"),
            ("POST", "/v1/rfid/counts", {"count_id": "a/b"}, 422, "validation_error"),
            ("POST", "/v1/rfid/counts", {"count_id": "4111111111111111"}, 422,
             "card_data_rejected"),
            ("GET", "/v1/rfid/counts/nope", None, 404, "count_not_found"),
            ("POST", "/v1/rfid/counts/nope/close", None, 404, "count_not_found"),
            ("POST", "/v1/sales", {"terminal": "T1", "lines": [{"epc": "E2" + "0" * 22}],
                                   "payments": [{"method": "card", "amount": "1"}]},
             422, "invalid_epc"),
            ("POST", "/v1/sales", {"terminal": "T1", "lines": [{"epc": "30", "qty": 1}]},
             422, "validation_error"),
            ("POST", "/v1/returns", {"lines": [{"sku": SKUS[1], "qty": 1, "unit_price": "1",
                                                "epc": epc_hex(GTINS[0], 1)}]},
             422, "epc_mismatch"),
        ]
        for method, path, body, status, code in cases:
            r = await api.request(method, path, json=body,
                                  headers={"Idempotency-Key": f"k-{path}-{status}-{code}"})
            assert (r.status_code, r.json()["code"]) == (status, code), (path, r.text)
        await api.post("/v1/rfid/counts", json={"count_id": "whole"})
        r = await api.post("/v1/rfid/counts", json={"zones": ["floor"]})
        assert (r.status_code, r.json()["code"]) == (409, "count_overlap")
        assert (await api.post("/v1/rfid/counts/whole/cancel")).json()["status"] == "cancelled"
        r = await api.post("/v1/rfid/counts/whole/close")
        assert (r.status_code, r.json()["code"]) == (409, "count_not_open")
    # Without the engine (an app embedded elsewhere): a clear 503.
    rig.services.extras.clear()
    async with serving(rig) as api:
        r = await api.get("/v1/rfid/accuracy")
        assert (r.status_code, r.json()["code"]) == (503, "rfid_not_running")
