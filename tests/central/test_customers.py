"""The customer registry at central (SQLite and PostgreSQL, real broker): registration,
what stores receive (keyed hashes only), history from store events and online orders,
the value index, consent withdrawal and key rotation."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from central.customer_history import value_index
from sync.customer_ids import keyed_hash
from sync.wire import format_ts
from tests.central.conftest import ADMIN_TOKEN, Central, FakeStore, event, wait_until

PHONE_E164 = "+33612345678"
PHONE_FORMS = ["0612345678", "612345678", "33612345678", PHONE_E164, "06 12 34 56 78"]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _commands(store: FakeStore, kind: str) -> list[dict[str, Any]]:
    with store.lock:
        return [c for c in store.commands if c["type"] == kind]


def _online(central: Central, make_store: Callable[[str], FakeStore]) -> FakeStore:
    store = make_store("S001")
    store.birth()
    store.command_ack(0)
    def online() -> bool:
        r = central.http.get("/v1/stores/S001", headers=central.admin)
        return r.status_code == 200 and r.json()["state"] == "online"

    wait_until(online, what="the store online at central")
    return store


def _ack_all(store: FakeStore) -> None:
    cseqs = store.cseqs()
    if cseqs:
        store.command_ack(max(cseqs))


def test_registered_customer_reaches_the_store_as_keyed_hashes(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = _online(central, make_store)
    out = central.post("/v1/customers", {
        "ref": "C-1", "name": "Nina", "phone": "06 12 34 56 78", "region": "FR",
        "tags": ["0a0a0a0a0a"], "consent": {"recognition": True},
        "loyalty": {"tier": "gold", "points": 1200}, "wishlist": ["PHONE-A", "PHONE-B"]})
    assert out["ref"] == "C-1"
    assert out["shared"]["stores"] == {"S001": 2}
    wait_until(lambda: _commands(store, "customers.upsert"), what="the upsert")
    key = _commands(store, "customers.key")[0]["data"]
    pepper = _unb64(key["key"])
    upsert = _commands(store, "customers.upsert")[0]["data"]
    assert upsert["key_id"] == key["key_id"]
    entry = upsert["customers"][0]
    assert entry["profile"]["name"] == "Nina"
    assert entry["profile"]["wishlist"] == ["PHONE-A", "PHONE-B"]
    assert sorted((i["kind"], _unb64(i["hmac"])) for i in entry["identifiers"]) == sorted([
        ("phone", keyed_hash(pepper, "phone", PHONE_E164)),
        ("tag", keyed_hash(pepper, "tag", "0A0A0A0A0A"))])
    with store.lock:
        sent = orjson.dumps(store.commands)
    for form in [*PHONE_FORMS, "0A0A0A0A0A", "0a0a0a0a0a"]:
        assert form.encode() not in sent
    shown = central.get("/v1/customers/C-1")
    assert PHONE_E164 not in orjson.dumps(shown).decode()
    assert "phone:…78" in shown["identifiers"]

    # a customer without consent is registered but never shared
    _ack_all(store)
    out = central.post("/v1/customers", {"ref": "C-2", "name": "Bo", "phone": "+33612345679",
                                         "consent": {"recognition": False}})
    wait_until(lambda: _commands(store, "customers.remove"), what="the remove")
    assert _commands(store, "customers.remove")[0]["data"]["refs"] == ["C-2"]


def test_withdrawal_and_rotation(central: Central,
                                 make_store: Callable[[str], FakeStore]) -> None:
    store = _online(central, make_store)
    central.post("/v1/customers", {"ref": "C-1", "name": "Nina", "phone": PHONE_E164,
                                   "consent": {"recognition": True}})
    wait_until(lambda: _commands(store, "customers.upsert"), what="the upsert")
    _ack_all(store)
    central.post("/v1/customers/C-1/withdraw")
    wait_until(lambda: _commands(store, "customers.remove"), what="the remove")
    assert _commands(store, "customers.remove")[0]["data"] == {"refs": ["C-1"]}
    _ack_all(store)
    central.http.patch("/v1/customers/C-1", headers=central.admin,
                       json={"consent": {"recognition": True}}).raise_for_status()
    wait_until(lambda: len(_commands(store, "customers.upsert")) == 2, what="re-shared")
    _ack_all(store)
    old = _commands(store, "customers.key")[0]["data"]["key_id"]
    rotated = central.post("/v1/customers/keys/rotate")
    assert rotated["previous"] == old
    assert rotated["key_id"] != old
    wait_until(lambda: _commands(store, "customers.key.retire"), what="the retire")
    with store.lock:
        kinds = [c["type"] for c in store.commands][-3:]
    assert kinds == ["customers.key", "customers.upsert", "customers.key.retire"]
    assert _commands(store, "customers.key.retire")[0]["data"] == {"key_id": old}
    assert _commands(store, "customers.upsert")[-1]["data"]["key_id"] == rotated["key_id"]


def test_history_across_channels_and_the_value_index(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = _online(central, make_store)
    central.post("/v1/customers", {"ref": "C-1", "name": "Nina", "phone": PHONE_E164,
                                   "consent": {"recognition": True}})
    now = datetime.now().astimezone()
    ts = format_ts(now)
    store.send([
        event(1, data={"sale_id": "s-1", "terminal": "T1", "total": "100.00",
                       "currency": "EUR", "customer": "C-1", "lines": []}, ts=ts),
        event(2, kind="return", delta=1, ts=ts,
              data={"return_id": "r-1", "refund_total": "20.00", "currency": "EUR",
                    "customer": "C-1", "lines": []}),
        event(3, kind="visit", stock=[], ts=ts,
              data={"visit_id": "v-1", "visitor": "abcd", "customer": "C-1",
                    "entered_at": ts}),
        event(4, data={"sale_id": "s-2", "total": "5.00", "currency": "EUR",
                       "customer": "C-unknown"}, ts=ts),
    ])
    store.wait_ack(4)
    value = central.get("/v1/customers/C-1/value")
    assert value["channels"] == ["store"]
    assert value["spend"] == "80.00"
    central.post("/v1/customers/C-1/online-orders", {
        "order_ref": "WEB-7", "total": "120.00", "currency": "EUR", "status": "placed"})
    value = central.get("/v1/customers/C-1/value")
    assert value["channels"] == ["online", "store"]
    assert value["spend"] == "200.00"
    assert value["recency_days"] == 0
    assert value["index"] == round(40 + 30 + 30 * 200 / 400)
    history = central.get("/v1/customers/C-1/history")["history"]
    assert sorted(h["kind"] for h in history) == ["order", "purchase", "return", "visit"]
    # the same order again updates it; the open order is in the context stores get
    central.post("/v1/customers/C-1/online-orders", {
        "order_ref": "WEB-7", "total": "120.00", "currency": "EUR", "status": "cancelled"})
    assert central.get("/v1/customers/C-1/value")["spend"] == "80.00"
    bad = central.http.get("/v1/customers/nobody/value", headers=central.admin)
    assert bad.status_code == 404
    assert bad.json()["code"] == "unknown_customer"


def test_registration_errors_have_codes(central: Central) -> None:
    for body, status, code in [
        ({"name": "X", "phone": "12345"}, 422, "invalid_phone"),
        ({"name": "X"}, 422, "no_identifier"),
        ({"name": "X", "cards": ["?"]}, 422, "invalid_card"),
        ({"name": "X", "cards": "LC0042"}, 422, "invalid_field"),
        ({"name": "", "phone": PHONE_E164}, 422, "invalid_field"),
    ]:
        r = central.http.post("/v1/customers", headers=central.admin, json=body)
        assert r.status_code == status, r.text
        assert r.json()["code"] == code
        assert "12345" not in r.json()["message"]
    central.post("/v1/customers", {"ref": "C-1", "name": "A", "phone": PHONE_E164})
    r = central.http.post("/v1/customers", headers=central.admin,
                          json={"ref": "C-2", "name": "B", "phone": "0612345678",
                                "region": "FR"})
    assert r.status_code == 409
    assert r.json()["code"] == "identifier_taken"


def test_value_index_formula() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=datetime.now().astimezone().tzinfo)

    def at(days: int) -> str:
        return format_ts(now - timedelta(days=days))

    assert value_index([], now) == {"index": 0, "channels": [], "channel_count": 0,
                                    "recency_days": None, "spend": "0", "currency": None}
    one = value_index([("purchase", "store", at(30), "200", "EUR", None)], now)
    assert one["index"] == 20 + 15 + 15  # one channel, 30 days ago, spend at the half mark
    old = value_index([("purchase", "store", at(400), "999", "EUR", None)], now)
    assert old["channel_count"] == 0  # outside the window
    mixed = value_index([("purchase", "store", at(1), "10", "EUR", None),
                         ("order", "online", at(2), "500", "GBP", "placed")], now)
    assert mixed["currency"] == "GBP"
    assert mixed["spend"] == "500"


def test_a_store_that_resyncs_gets_the_pepper_and_every_customer_again(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    out = central.post("/v1/customers", {"ref": "C-1", "name": "Nina", "phone": PHONE_E164,
                                         "consent": {"recognition": True}})
    assert out["shared"]["stores"] == {}  # no store known yet
    store = _online(central, make_store)
    assert not store.commands
    snap = central.http.get("/v1/stores/S001/snapshot",
                            headers={"Authorization": "Bearer token-s001"})
    assert snap.status_code == 200
    through = snap.json()["through_cseq"]
    wait_until(lambda: _commands(store, "customers.upsert"), what="the upsert after a resync")
    assert [c["cseq"] for c in store.commands][:2] == [through + 1, through + 2]
    assert [c["type"] for c in store.commands][:2] == ["customers.key", "customers.upsert"]


def test_the_cli_registers_orders_and_withdraws(central: Central,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from central.cli import main  # noqa: PLC0415

    monkeypatch.setenv("EDGE_CENTRAL_ADMIN_TOKEN", ADMIN_TOKEN)
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, ["customers", *args, "--url", central.url])
        assert result.exit_code == 0, result.output
        return orjson.loads(result.output)

    out = run("register", "--ref", "C-9", "--name", "Nina", "--phone", "06 12 34 56 78",
              "--region", "FR", "--recognition", "--tier", "gold", "--points", "10",
              "--wishlist", "PHONE-A")
    assert out["ref"] == "C-9"
    run("order", "C-9", "--order-ref", "WEB-1", "--total", "10.00")
    shown = run("show", "C-9")
    assert shown["consent"]["recognition"] is True
    assert shown["context"]["loyalty"] == {"tier": "gold", "points": 10}
    assert [h["id"] for h in shown["history"]] == ["WEB-1"]
    assert PHONE_E164 not in orjson.dumps(shown).decode()
    run("withdraw", "C-9")
    assert run("show", "C-9")["consent"]["recognition"] is False
    assert run("list")["customers"][0]["ref"] == "C-9"
    bad = runner.invoke(main, ["customers", "register", "--name", "X", "--phone", "12",
                               "--url", central.url])
    assert bad.exit_code != 0
    assert "not a" in bad.output


def test_orders_of_the_central_order_intake_join_the_history(central: Central) -> None:
    """When central's order intake (``omni_orders``, another module) is installed, its
    orders with ``customer_ref`` count as the customer's online channel."""
    central.post("/v1/customers", {"ref": "c_42", "name": "Nina", "phone": PHONE_E164})

    def intake(core: Any) -> tuple[None, list[Any]]:
        conn = core.conn
        conn.begin_write()
        conn.execute("CREATE TABLE IF NOT EXISTS omni_orders (order_id TEXT PRIMARY KEY, "
                     "sha TEXT NOT NULL, channel TEXT NOT NULL, body TEXT NOT NULL, "
                     "state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, "
                     "created TEXT NOT NULL, updated TEXT NOT NULL)")
        for order_id, ref, state in (("o-1", "c_42", "accepted"), ("o-2", "cx42", "accepted"),
                                     ("o-3", "c_42", "cancelled")):
            body = orjson.dumps({"order_id": order_id, "channel": "web",
                                 "customer_ref": ref, "lines": []}).decode()
            conn.execute("INSERT INTO omni_orders (order_id, sha, channel, body, state, "
                         "created, updated) VALUES (?, 'x', 'web', ?, ?, ?, ?)",
                         (order_id, body, state, format_ts(datetime.now().astimezone()),
                          format_ts(datetime.now().astimezone())))
        conn.commit()
        return None, []

    central.service.call(intake)
    shown = central.get("/v1/customers/c_42")
    assert sorted(h["id"] for h in shown["history"]) == ["o-1", "o-3"]  # not cx42's
    assert shown["value"]["channels"] == ["online"]
    assert shown["value"]["recency_days"] == 0


def test_erasure_removes_the_customer_everywhere(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = _online(central, make_store)
    central.post("/v1/customers", {"ref": "C-1", "name": "Nina", "phone": PHONE_E164,
                                   "consent": {"recognition": True}})
    central.post("/v1/customers/C-1/online-orders", {
        "order_ref": "WEB-1", "total": "10.00", "currency": "EUR"})
    wait_until(lambda: _commands(store, "customers.upsert"), what="the upsert")
    _ack_all(store)
    r = central.http.delete("/v1/customers/C-1", headers=central.admin)
    assert r.status_code == 200, r.text
    wait_until(lambda: _commands(store, "customers.remove"), what="the remove")
    assert central.http.get("/v1/customers/C-1", headers=central.admin).status_code == 404
    assert central.get("/v1/customers/C-1/history")["history"] == []
    pepper = _commands(store, "customers.key")[0]["data"]["key"]
    _ack_all(store)
    wait_until(lambda: central.get("/v1/stores/S001")["acked_cseq"] == max(store.cseqs()),
               what="the ack at central")
    # the phone number is free again; the next change compacts the acknowledged commands
    central.post("/v1/customers", {"ref": "C-2", "name": "Other", "phone": PHONE_E164})
    with central.service.db.reading() as conn:
        bodies = [str(b) for (b,) in conn.execute(
            "SELECT body FROM commands WHERE store = 'S001' AND type IN ('customers.key', "
            "'customers.upsert', 'customers.remove') ORDER BY cseq")]
    assert len(bodies) >= 3
    assert not any("Nina" in b or pepper in b for b in bodies)
