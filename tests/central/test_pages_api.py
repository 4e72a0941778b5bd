"""The operations page's routes without a browser, on SQLite and PostgreSQL: the grid,
open alerts and their acknowledgement (kept in ``alert_acks``), pending commands, the
login cookie accepted by every operator route, and a self-hosted /docs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from central.session import SESSION
from tests.central.conftest import ADMIN_TOKEN, Central, FakeStore, event, wait_until


def _row(central: Central) -> dict[str, Any]:
    rows = central.get("/v1/grid")["stores"]
    return rows[0] if rows else {}


def test_grid_open_alerts_ack_and_pending_commands(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    store.birth()
    store.send([event(1, "A-1", -2), event(2, "A-1", -1)])
    store.wait_ack(2)
    store.birth(last_seq=0)  # live birth behind central: history_rolled_back
    store.birth(last_seq=1)  # and again: a second alert
    central.post("/v1/stores/S001/adjust", {"lines": [{"sku": "A-1", "delta": 4}]})
    store.publish(store.topics.health, orjson.dumps({
        "v": 1, "store": "S001", "ts": "2026-11-25T09:00:00.000Z", "agent": "fake/1",
        "uptime_s": 60, "outbox_pending": 7, "outbox_oldest_age_s": 12, "last_ack_at": None,
        "applied_cseq": 0, "db_bytes": 1, "wal_bytes": 1, "disk_free_bytes": 1,
        "clock_offset_ms": 0, "devices": {"connected": 1, "total": 2}}), retain=True)
    # the broker delivers in its own time: wait for what central has seen, not for a clock
    wait_until(lambda: _row(central).get("backlog") == 7 and _row(central)["open_alerts"] == 2
               and _row(central)["commands_pending"] == 1, what="health, alerts, command")
    grid = central.get("/v1/grid")
    [row] = grid["stores"]
    assert row["store"] == "S001"
    assert row["state"] == "online"
    assert row["backlog"] == 7
    assert row["ack_lag_s"] == 12
    assert row["last_ack_age_s"] is None
    assert row["open_alerts"] == 2
    assert row["commands_pending"] == 1
    assert row["digest"] is None
    assert grid["features"] == {"atp": True, "orders": True}  # the omnichannel routes
    opened = central.get("/v1/alerts/open")["alerts"]
    assert [a["kind"] for a in opened] == ["history_rolled_back"] * 2
    newest, oldest = opened
    assert newest["id"] > oldest["id"]
    acked = central.post(f"/v1/alerts/{oldest['id']}/ack", {"note": "seen by ops"})
    assert acked == {"id": oldest["id"], "acked": True, "already": False}
    assert [a["id"] for a in central.get("/v1/alerts/open")["alerts"]] == [newest["id"]]
    assert [a["id"] for a in central.get("/v1/alerts/open", params={"store": "S002"}
                                         )["alerts"]] == []
    assert central.get("/v1/grid")["stores"][0]["open_alerts"] == 1
    assert len(central.alerts()) == 2  # the full list keeps acknowledged alerts
    assert central.post(f"/v1/alerts/{oldest['id']}/ack")["already"] is True
    central.post("/v1/alerts/987654/ack", expect=404)
    r = central.http.post(f"/v1/alerts/{newest['id']}/ack", headers=central.admin,
                          json={"note": "x" * 501})
    assert r.status_code == 422
    pending = central.get("/v1/stores/S001/commands/pending")["commands"]
    assert [(c["cseq"], c["type"]) for c in pending] == [(1, "stock.adjust")]
    store.command_ack(1)
    wait_until(lambda: central.get("/v1/stores/S001/commands/pending")["commands"] == [],
               what="the command ack")
    assert central.get("/v1/grid")["stores"][0]["commands_pending"] == 0
    bad = central.http.get("/v1/stores/no%20such/commands/pending", headers=central.admin)
    assert bad.status_code == 404


def test_the_login_cookie_opens_operator_routes_and_nothing_else_does(
        central: Central) -> None:
    with httpx.Client(base_url=central.url) as client:
        assert client.get("/", follow_redirects=False).status_code == 303
        assert client.get("/docs", follow_redirects=False).headers["location"] == "/login"
        for headers in ({}, {"Cookie": "junk=;;"}, {"Cookie": f"{SESSION.name}={ADMIN_TOKEN}"},
                        {"Authorization": f"Bearer {SESSION.value(ADMIN_TOKEN.encode())}"}):
            for path in ("/v1/status", "/v1/grid", "/v1/alerts/open", "/v1/alerts"):
                r = client.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
        assert client.post("/login", data={"token": "wrong"}).status_code == 401
        ok = client.post("/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
        assert ok.status_code == 303
        assert "HttpOnly" in ok.headers["set-cookie"]
        assert "SameSite=Strict" in ok.headers["set-cookie"]
        cookie = {"Cookie": f"{SESSION.name}={SESSION.value(ADMIN_TOKEN.encode())}"}
        for path in ("/v1/status", "/v1/grid", "/v1/alerts/open", "/v1/alerts"):
            assert client.get(path, headers=cookie).status_code == 200, path
        page = client.get("/", headers=cookie)
        assert page.status_code == 200
        assert "/ui/static/ops.js" in page.text
        for name in ("style.css", "ops.css"):  # the kit's stylesheet and the page's own
            assert f'href="/ui/static/{name}"' in page.text
            assert client.get(f"/ui/static/{name}").status_code == 200, name
        as_json = client.post("/login", json={"token": ADMIN_TOKEN}, follow_redirects=False)
        assert as_json.status_code == 303  # as the store page's script posts it
        assert client.post("/login", json={"token": "wrong"}).status_code == 401
        docs = client.get("/docs", headers=cookie)
        assert "/ui/static/swagger/swagger-ui.css" in docs.text
        assert "cdn" not in docs.text.lower()
        assert client.get("/ui/static/swagger/swagger-ui-bundle.js").status_code == 200
        assert client.get("/redoc").status_code == 404


def test_rotating_the_admin_token_ends_every_page_session(central: Central,
                                                         tmp_path: Path) -> None:
    old = {"Cookie": f"{SESSION.name}={SESSION.value(ADMIN_TOKEN.encode())}"}
    with httpx.Client(base_url=central.url) as client:
        assert client.get("/v1/grid", headers=old).status_code == 200
        (tmp_path / "admin.token").write_text("a-new-admin-token")
        assert client.get("/v1/grid", headers=old).status_code == 401
        new = {"Cookie": f"{SESSION.name}={SESSION.value(b'a-new-admin-token')}"}
        assert client.get("/v1/grid", headers=new).status_code == 200
        assert client.get("/", headers=old, follow_redirects=False).status_code == 303
