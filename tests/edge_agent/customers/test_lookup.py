"""The store's customer cache: customers.* commands, the constant-work lookup, the API."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson
import pytest

from edge_agent import command_apply as cmds
from edge_agent.api.app import create_app
from edge_agent.config_load import parse_config
from edge_agent.customers import cache
from edge_agent.customers.commands import CustomerCommandInvalid, apply_customer_command, purge
from edge_agent.ledger import Ledger
from edge_agent.services import AgentServices
from tests.edge_agent.customers.helpers import PEPPER, b64, customer_entry, install

PHONE = "+33612345678"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[AgentServices]:
    config = parse_config({"store": {"id": "S001", "country": "FR"},
                           "database": {"path": str(tmp_path / "ledger.db")}},
                          tmp_path / "config.toml")
    ledger = Ledger.open(config.database.path, config.store.id)
    try:
        yield AgentServices(config=config, ledger=ledger)
    finally:
        ledger.close()


def _find(services: AgentServices, kind: str, value: str) -> cache.Found | None:
    now = time.time()
    return services.ledger.read_blocking(lambda conn: cache.lookup(conn, kind, value, now))


def test_a_cached_customer_is_found_by_phone_card_and_tag(services: AgentServices) -> None:
    services.ledger.write_blocking(lambda tx: install(tx, [customer_entry(
        "C-1", [("phone", PHONE), ("card", "LC 0042"), ("tag", "0a0a0a0a0a")])]))
    for kind, value in (("phone", PHONE), ("card", "LC0042"), ("tag", "0A0A0A0A0A")):
        found = _find(services, kind, value)
        assert found is not None, kind
        assert found.profile["ref"] == "C-1", kind
    assert _find(services, "phone", "+33612345679") is None
    assert _find(services, "card", PHONE) is None  # the kind is part of the hash


def test_withdrawal_removes_and_rotation_rehashes(services: AgentServices) -> None:
    write = services.ledger.write_blocking
    write(lambda tx: install(tx, [customer_entry("C-1", [("phone", PHONE)]),
                                  customer_entry("C-2", [("phone", "+33612345699")])]))
    new = bytes(range(100, 132))
    write(lambda tx: install(tx, [customer_entry("C-1", [("phone", PHONE)], pepper=new)],
                             key_id="k2", pepper=new))
    write(lambda tx: apply_customer_command(tx, "customers.key.retire", {"key_id": "k1"}))
    assert _find(services, "phone", PHONE) is not None  # under the new pepper
    assert _find(services, "phone", "+33612345699") is None  # its old hash went with k1
    write(lambda tx: apply_customer_command(tx, "customers.remove", {"refs": ["C-1"]}))
    assert _find(services, "phone", PHONE) is None
    figures = services.ledger.read_blocking(cache.figures)
    assert figures["keys"][0]["key_id"] == "k2"
    assert figures["identifiers"] == {}


def test_a_third_key_retires_the_oldest(services: AgentServices) -> None:
    for n in range(3):
        services.ledger.write_blocking(lambda tx, n=n: apply_customer_command(
            tx, "customers.key", {"key_id": f"k{n}", "key": b64(bytes([n]) * 32)}))
        time.sleep(0.002)  # installed_at has millisecond resolution
    keys = services.ledger.read_blocking(cache.figures)["keys"]
    assert sorted(k["key_id"] for k in keys) == ["k1", "k2"]


def test_retention_and_size_are_bounded(services: AgentServices) -> None:
    now = time.time()
    services.ledger.write_blocking(lambda tx: install(tx, [
        customer_entry(f"C-{n}", [("phone", f"+3361234560{n}")]) for n in range(5)],
        now=now - 40 * 86400))  # cached 40 days ago, default retention 30 days
    assert _find(services, "phone", "+33612345601") is None  # expired: never answered
    assert services.ledger.write_blocking(lambda tx: purge(tx, now)) == 5
    services.ledger.write_blocking(lambda tx: install(tx, [
        customer_entry(f"C-{n}", [("phone", f"+3361234560{n}")]) for n in range(5)]))
    assert services.ledger.write_blocking(lambda tx: purge(tx, time.time(), max_cached=3)) == 2
    assert services.ledger.read_blocking(cache.figures)["customers"] == 3


@pytest.mark.parametrize(("ctype", "data", "match"), [
    ("customers.key", {"key_id": "k1", "key": "c2hvcnQ"}, "32 bytes"),
    ("customers.key", {"key_id": "bad id!", "key": b64(PEPPER)}, "key_id"),
    ("customers.upsert", {"key_id": "nope", "customers": [{}]}, "unknown key_id"),
    ("customers.remove", {"refs": []}, "refs"),
    ("customers.upsert", {"key_id": "k1", "customers": [
        customer_entry("C-9", [("phone", PHONE)], recognition=False)]}, "consent"),
    ("customers.upsert", {"key_id": "k1", "customers": [
        {**customer_entry("C-9", [("phone", PHONE)]),
         "identifiers": [{"kind": "email", "hmac": b64(PEPPER)}]}]}, "kind"),
])
def test_malformed_commands_change_nothing(services: AgentServices, ctype: str,
                                           data: dict[str, Any], match: str) -> None:
    if ctype == "customers.upsert" and data["key_id"] == "k1":
        services.ledger.write_blocking(lambda tx: apply_customer_command(
            tx, "customers.key", {"key_id": "k1", "key": b64(PEPPER)}))
    with pytest.raises(CustomerCommandInvalid, match=match):
        services.ledger.write_blocking(lambda tx: apply_customer_command(tx, ctype, data))
    assert services.ledger.read_blocking(cache.figures)["customers"] == 0


def test_the_command_record_keeps_neither_the_pepper_nor_a_profile(
        services: AgentServices) -> None:
    entry = customer_entry("C-1", [("phone", PHONE)])
    commands = [
        {"cseq": 1, "id": "a", "type": "customers.key", "ts": "2026-11-25T09:00:00.000Z",
         "data": {"key_id": "k1", "key": b64(PEPPER)}},
        {"cseq": 2, "id": "b", "type": "customers.upsert", "ts": "2026-11-25T09:00:00.000Z",
         "data": {"key_id": "k1", "customers": [entry]}},
        {"cseq": 3, "id": "c", "type": "customers.upsert", "ts": "2026-11-25T09:00:00.000Z",
         "data": {"key_id": "k9", "customers": [entry]}},
    ]
    statuses = [services.ledger.write_blocking(lambda tx, c=c: cmds.apply_command(tx, c))[0]
                for c in commands]
    assert statuses == ["applied", "applied", "flagged"]
    rows = services.ledger.read_blocking(
        lambda conn: conn.execute("SELECT payload FROM commands").fetchall())
    blob = b"".join(bytes(r[0]) for r in rows)
    assert b64(PEPPER).encode() not in blob
    assert b"Nina" not in blob
    assert entry["identifiers"][0]["hmac"].encode() not in blob
    assert _find(services, "phone", PHONE) is not None


def _trace(fn: Callable[[], Any]) -> list[tuple[str, str]]:
    """Every Python and C call ``fn`` makes, in order (``sys.setprofile``)."""
    calls: list[tuple[str, str]] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(("py", frame.f_code.co_qualname))
        elif event == "c_call":
            calls.append(("c", getattr(arg, "__qualname__", repr(arg))))

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_a_miss_does_the_same_work_as_a_hit(services: AgentServices, tmp_path: Path) -> None:
    services.ledger.write_blocking(lambda tx: install(tx, [customer_entry(
        "C-1", [("phone", PHONE)])]))
    conn = sqlite3.connect(tmp_path / "ledger.db")
    try:
        now = time.time()
        hit = _trace(lambda: cache.lookup(conn, "phone", PHONE, now))
        miss = _trace(lambda: cache.lookup(conn, "phone", "+33612345679", now))
        assert cache.lookup(conn, "phone", PHONE, now) is not None
        assert cache.lookup(conn, "phone", "+33612345679", now) is None
    finally:
        conn.close()
    assert ("c", "loads") in hit
    assert ("c", "hmac_new") in hit
    assert hit == miss


async def test_the_lookup_route(services: AgentServices) -> None:
    services.ledger.write_blocking(lambda tx: install(tx, [customer_entry(
        "C-1", [("phone", PHONE), ("card", "LC0042")])]))
    app = create_app(services)  # the agent's own error handlers: no input echoed
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        r = await client.post("/v1/customers/lookup", json={"phone": "06 12 34 56 78"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["found"] is True
        assert body["matched_by"] == "phone"
        assert body["customer"]["ref"] == "C-1"
        assert body["customer"]["wishlist"]
        assert body["context"]["as_of"] == "2026-11-25T09:00:00.000Z"
        assert body["context"]["age_s"] > 0
        assert "0612345678" not in r.text
        assert "612345678" not in r.text
        r = await client.post("/v1/customers/lookup", json={"card": "lc0042"})
        assert r.json()["customer"]["ref"] == "C-1"
        r = await client.post("/v1/customers/lookup", json={"phone": "06 99 99 99 99"})
        assert r.status_code == 200
        assert r.json() == {"found": False}
        r = await client.post("/v1/customers/lookup", json={"phone": "12"})
        assert r.status_code == 422
        assert r.json()["code"] == "invalid_phone"
        assert "12" not in r.json()["message"].replace("1 to", "")
        r = await client.post("/v1/customers/lookup", json={"phone": PHONE, "card": "x"})
        assert r.status_code == 422
        assert PHONE not in r.text


async def test_the_sync_housekeeping_purges_expired_customers(services: AgentServices) -> None:
    from edge_agent.sync_adapter import LedgerStorePort  # noqa: PLC0415

    services.ledger.write_blocking(lambda tx: install(tx, [
        customer_entry("C-new", [("phone", "+33612345699")])]))
    services.ledger.write_blocking(lambda tx: install(tx, [  # refreshed 31 days ago
        customer_entry("C-old", [("phone", PHONE)])], now=time.time() - 31 * 86400))
    assert services.ledger.read_blocking(cache.figures)["customers"] == 2
    port = LedgerStorePort(services.ledger)
    await port.prune_acked("2000-01-01T00:00:00.000Z")
    figures = services.ledger.read_blocking(cache.figures)
    assert figures["customers"] == 1
    assert figures["identifiers"] == {"phone": 1}


async def test_a_sale_and_a_return_carry_the_customer(services: AgentServices) -> None:
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        r = await client.post("/v1/returns", headers={"Idempotency-Key": "ret-1"}, json={
            "lines": [{"sku": "A-1", "qty": 1, "unit_price": "2.00"}], "customer": "C-1"})
        assert r.status_code == 201, r.text
        r = await client.post("/v1/returns", headers={"Idempotency-Key": "ret-2"}, json={
            "lines": [{"sku": "A-1", "qty": 1, "unit_price": "2.00"}]})
        assert r.status_code == 201, r.text
    rows = services.ledger.read_blocking(lambda conn: conn.execute(
        "SELECT payload FROM events WHERE type = 'return' ORDER BY seq").fetchall())
    customers = [orjson.loads(row[0])["data"].get("customer") for row in rows]
    assert customers == ["C-1", None]


def test_the_store_country_is_validated(tmp_path: Path) -> None:
    from edge_agent.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="country"):
        parse_config({"store": {"id": "S001", "country": "fr"}}, tmp_path / "c.toml")


def test_during_a_rotation_a_miss_still_does_the_work_of_a_hit(
        services: AgentServices, tmp_path: Path) -> None:
    new = bytes(range(100, 132))
    services.ledger.write_blocking(lambda tx: install(tx, [customer_entry(
        "C-1", [("phone", PHONE)])]))  # under k1 only
    services.ledger.write_blocking(lambda tx: install(tx, [customer_entry(
        "C-2", [("phone", "+33612345699")], pepper=new)], key_id="k2", pepper=new))
    conn = sqlite3.connect(tmp_path / "ledger.db")
    try:
        now = time.time()
        old_key_hit = _trace(lambda: cache.lookup(conn, "phone", PHONE, now))
        new_key_hit = _trace(lambda: cache.lookup(conn, "phone", "+33612345699", now))
        miss = _trace(lambda: cache.lookup(conn, "phone", "+33612345670", now))
        assert cache.lookup(conn, "phone", PHONE, now) is not None
        assert cache.lookup(conn, "phone", "+33612345699", now) is not None
        assert cache.lookup(conn, "phone", "+33612345670", now) is None
    finally:
        conn.close()
    assert old_key_hit == new_key_hit == miss
