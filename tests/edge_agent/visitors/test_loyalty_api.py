"""Loyalty commands, the customer_arrived announcement, the report and the HTTP routes."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from drivers.events import TagEvent
from edge_agent.services import AgentServices
from edge_agent.visitors.api import router
from edge_agent.visitors.engine import VisitorsEngine
from edge_agent.visitors.errors import LoyaltyCommandInvalid
from edge_agent.visitors.loyalty import REFUSED, apply_loyalty_command
from edge_agent.visitors.report import conversion, periods, visitors_today
from tests.edge_agent.customers.helpers import customer_entry, install
from tests.edge_agent.visitors.conftest import T0, Clock, insert_sale

Factory = Callable[..., AgentServices]
H1 = hashlib.sha256(b"0A0A0A0A0A").hexdigest()


@pytest.mark.parametrize(("ctype", "data"), [
    ("loyalty.upsert", {"tags": [{"tag_hash": H1, "customer": "C-1"}]}),
    ("loyalty.remove", {"tags": [{"tag_hash": H1}]}),
])
def test_the_old_unkeyed_loyalty_commands_are_refused_clearly(
    open_services: Factory, ctype: str, data: dict[str, Any]
) -> None:
    services = open_services()
    with pytest.raises(LoyaltyCommandInvalid, match="no longer accepted"):
        services.ledger.write_blocking(lambda tx: apply_loyalty_command(tx, ctype, data))
    assert "customers.upsert" in REFUSED
    assert services.ledger.read_blocking(
        lambda conn: conn.execute("SELECT count(*) FROM customer_idents").fetchone()[0]) == 0


async def test_registered_tag_announces_the_customer(
    open_services: Factory, clock: Clock
) -> None:
    services = open_services(absence_gap_s=60)
    rfid = next(d for d in services.config.devices if d.name == "rfid-1")
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    # the catalog arrives after start: the engine picks it up on a later tick
    await services.ledger.write(lambda tx: install(tx, [customer_entry(
        "C-77", [("tag", "0A0A0A0A0A")])]))
    clock.advance(11)
    await engine.tick()
    async with services.hub.subscribe({"customer_arrived"}) as queue:
        engine.handle(rfid, TagEvent(device="rfid-1", tag_id="0B0B0B0B0B",
                                     technology="em4100", present=True))
        engine.handle(rfid, TagEvent(device="rfid-1", tag_id="0a0a0a0a0a",
                                     technology="em4100", present=True))
        topic, data = await asyncio.wait_for(queue.get(), 2)
        assert queue.empty()
    assert topic == "customer_arrived"
    assert (data["customer"], data["zone"], data["device"]) == ("C-77", "entrance", "rfid-1")
    assert "0A0A0A0A0A" not in repr(data).upper()
    for raw in ("0B0B0B0B0B", "0a0a0a0a0a"):
        engine.handle(rfid, TagEvent(device="rfid-1", tag_id=raw, technology="em4100",
                                     present=False))
    clock.advance(60)
    await engine.tick()
    rows = services.ledger.read_blocking(lambda conn: conn.execute(
        "SELECT customer FROM visits ORDER BY customer").fetchall())
    assert [r[0] for r in rows] == [None, "C-77"]


def seed(conn_tx: Any) -> None:
    """Two visits (one returning shopper), footfall in two periods, three sales."""
    tx = conn_tx
    tx.executemany(
        "INSERT INTO visits (visit_id, visitor, source, zone, device, entered_at, left_at, "
        "dwell_s, customer, seq) VALUES (?, ?, 'em4100', 'entrance', 'rfid-1', ?, ?, ?, ?, 0)",
        [("v1", "aaaa", T0 + 10, T0 + 70, 60, None),
         ("v2", "aaaa", T0 + 1000, T0 + 1300, 300, "C-1"),
         ("v3", "bbbb", T0 + 1100, T0 + 1200, 100, None),
         ("old", "cccc", T0 - 86400, T0 - 86000, 400, None)])
    tx.executemany(
        "INSERT INTO footfall (door, period_start, period_s, entries, exits, emitted) "
        "VALUES (?, ?, 900, ?, ?, 1)",
        [("door-1", int(T0), 4, 1), ("door-1", int(T0) + 900, 2, 3),
         ("door-2", int(T0) + 900, 2, 0)])
    for sale_id, ts in [("s1", "2026-11-25T10:05:00.000Z"), ("s2", "2026-11-25T10:15:00.000Z"),
                        ("s3", "2026-11-25T10:29:59.999Z"), ("s0", "2026-11-24T10:00:00.000Z")]:
        insert_sale(tx, sale_id, ts)
    tx.set_meta("visitors.timezone", "Europe/Berlin")
    tx.set_meta("visitors.footfall_period_s", "900")


def test_report_figures(open_services: Factory) -> None:
    services = open_services()
    services.ledger.write_blocking(seed)
    read = services.ledger.read_blocking
    today = read(lambda conn: visitors_today(conn, now=T0 + 2000))
    assert today["date"] == "2026-11-25"
    assert (today["visits"], today["visitors"], today["returning_visitors"]) == (3, 2, 1)
    assert (today["customer_visits"], today["dwell_median_s"]) == (1, 100)
    assert (today["entries"], today["exits"], today["sales"]) == (8, 4, 3)
    assert today["sales_per_visit"] == 1.0
    assert today["sales_per_entry"] == 0.375
    rows = read(lambda conn: periods(conn, T0, T0 + 1800))
    assert [(r["visits"], r["entries"], r["sales"]) for r in rows] == [(1, 4, 1), (2, 4, 2)]
    assert rows[1]["sales_per_entry"] == 0.5
    empty = read(lambda conn: conversion(conn, T0 + 5000, T0 + 6000))
    assert (empty["sales_per_visit"], empty["sales_per_entry"]) == (None, None)


async def test_http_routes(open_services: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    services = open_services()
    services.ledger.write_blocking(seed)
    monkeypatch.setattr("time.time", lambda: T0 + 2000)
    app = FastAPI()
    app.state.services = services
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        today = (await client.get("/v1/visitors/today")).json()
        assert (today["visits"], today["sales"], today["live"]) == (3, 3, None)
        day = (await client.get("/v1/visitors/periods", params={"date": "2026-11-25"})).json()
        assert len(day["periods"]) == 96
        assert sum(p["entries"] for p in day["periods"]) == 8
        conv = (await client.get("/v1/visitors/conversion", params={
            "from": "2026-11-25T10:00:00.000Z", "to": "2026-11-25T10:15:00.000Z"})).json()
        assert (conv["visits"], conv["entries"], conv["sales"]) == (1, 4, 1)
        bad = await client.get("/v1/visitors/conversion", params={"from": "yesterday",
                                                                    "to": "today"})
        assert bad.status_code == 422
        one_sided = await client.get("/v1/visitors/conversion",
                                     params={"from": "2026-11-25T10:00:00Z"})
        assert one_sided.status_code == 422


def test_report_reads_a_plain_read_only_connection(open_services: Factory) -> None:
    services = open_services()
    services.ledger.write_blocking(seed)
    path = services.config.database.path
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert visitors_today(conn, now=T0 + 2000)["visits"] == 3
    finally:
        conn.close()


def test_report_on_a_database_without_visitors_tables(tmp_path: Any) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    try:
        summary = visitors_today(conn, now=T0)
    finally:
        conn.close()
    assert (summary["visits"], summary["entries"]) == (0, 0)
    assert "migration" in summary["note"]


async def test_router_inside_the_agent_app(open_services: Factory, clock: Clock) -> None:
    from edge_agent.api.app import create_app  # noqa: PLC0415 - the lead's app, if present

    services = open_services()
    engine = VisitorsEngine(services, clock=clock)
    await engine.start()
    app = create_app(services)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        today = (await client.get("/v1/visitors/today")).json()
        assert today["live"]["open_visits"] == 0
        assert today["live"]["shedding"] is False
        bad = await client.get("/v1/visitors/conversion",
                               params={"from": "2026-11-25T10:00:00Z"})
        assert bad.status_code == 422
