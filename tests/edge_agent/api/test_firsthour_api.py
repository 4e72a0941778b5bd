"""What a POS integrator hit with curl on the first day (issue 17), each pinned by a test."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import generate_latest

from tests.edge_agent.api.conftest import Api, running_api
from tests.edge_agent.api.test_api import assert_error, key, post
from tests.edge_agent.retail.seed import SALE_BARCODE
from tests.helpers.ports import free_port


async def test_unknown_sku_is_a_404_with_a_stable_code(api: Api) -> None:
    assert_error(await api.client.get("/v1/stock/NOPE"), 404, "sku_not_found")
    known = await api.client.get("/v1/stock/A-100")
    assert known.status_code == 200, known.text


async def test_openapi_marks_payments_as_required(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schema = spec["components"]["schemas"]["SaleRequest"]
    assert "payments" in schema["required"]
    body = {"terminal": "T1", "lines": [{"barcode": SALE_BARCODE, "qty": 1}]}
    refused = assert_error(await post(api, "/v1/sales", body), 422, "validation_error")
    assert refused["errors"][0]["loc"][-1] == "payments"


async def test_a_card_cannot_give_change(api: Api) -> None:
    body = {"terminal": "T1", "lines": [{"barcode": SALE_BARCODE, "qty": 1}],
            "payments": [{"method": "card", "amount": "1000.00"}]}
    error = assert_error(await post(api, "/v1/sales", body), 422, "overpayment")
    assert "only cash gives change" in error["message"]
    cash = await post(api, "/v1/sales", {**body, "payments": [
        {"method": "card", "amount": "1.00"}, {"method": "cash", "amount": "20.00"}]})
    assert cash.status_code == 201, cash.text
    assert "change" in cash.json()


async def test_a_text_plain_body_is_415(api: Api) -> None:
    body = '{"lines": [{"sku": "A-100", "qty": 1}]}'
    for content_type in ("text/plain", None):
        headers = {**key(), **({"content-type": content_type} if content_type else {})}
        r = await api.client.post("/v1/receipts", content=body, headers=headers)
        assert_error(r, 415, "unsupported_media_type")
    sale = await api.client.post("/v1/sales", content=body,
                                 headers={**key(), "content-type": "text/plain"})
    assert_error(sale, 415, "unsupported_media_type")
    ok = await api.client.post("/v1/receipts", content=body,
                               headers={**key(), "content-type": "application/json; "
                                                                 "charset=utf-8"})
    assert ok.status_code == 201, ok.text


async def test_413_is_counted_under_its_route(api: Api) -> None:
    big = {"lines": [{"sku": "A-100", "qty": 1}], "ref": "x" * 10_000}
    assert_error(await post(api, "/v1/receipts", big), 413, "body_too_large")
    text = generate_latest(api.app.state.metrics.registry).decode()
    assert 'route="/v1/receipts",status="413"' in text, text
    assert 'route="unmatched",status="413"' not in text


async def test_413_is_counted_under_a_route_of_an_included_router(api: Api) -> None:
    big = {"by": "x" * 10_000}
    assert_error(await post(api, "/v1/orders/O-1/accept", big), 413, "body_too_large")
    text = generate_latest(api.app.state.metrics.registry).decode()
    assert 'route="/v1/orders/{order_id}/accept",status="413"' in text, text
    assert 'route="unmatched"' not in text


async def test_wrong_token_and_missing_token_say_different_things(short_dir: Path) -> None:
    token_file = short_dir / "token"
    token_file.write_text("s3cret-token\n")
    port = free_port()
    async with running_api(short_dir, tcp={"port": port, "token_file": str(token_file)}), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as tcp:
        missing = assert_error(await tcp.get("/v1/status"), 401, "unauthorized")
        wrong = assert_error(await tcp.get("/v1/status", headers={
            "Authorization": "Bearer wrong"}), 401, "invalid_token")
        assert missing["message"] != wrong["message"]
        assert "s3cret" not in wrong["message"]


async def test_malformed_json_unknown_route_and_method_say_what_happened(api: Api) -> None:
    bad = await api.client.post("/v1/receipts", content=b"{bad",
                                headers={**key(), "content-type": "application/json"})
    assert_error(bad, 422, "invalid_json")
    sale = await api.client.post("/v1/sales", content=b"{bad",
                                 headers={**key(), "content-type": "application/json"})
    assert_error(sale, 422, "invalid_json")
    missing = assert_error(await api.client.get("/v1/nope"), 404, "not_found")
    assert "GET /v1/nope" in missing["message"]
    wrong = assert_error(await api.client.delete("/v1/status"), 405, "method_not_allowed")
    assert "DELETE" in wrong["message"]
