"""The customer at the till, end to end: a real broker, the reference central and a real
agent process.

A customer registered at central (phone number, consent) is found at the till by the
phone number typed in national form; still found with the broker stopped; after they
withdraw consent at central, no longer found once the store synced. Throughout, the raw
phone number never appears in the store's database, its WAL, the agent's log, the agent's
event stream or any MQTT payload, in any encoding we can think of; nor does the chain's
pepper appear in the store's log or its command records.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
import pytest

from tests.helpers.mosquitto import Broker
from tests.helpers.processes import AgentProcess, CentralProcess, wait_until
from tests.hostile.test_mqtt_hostile import RawClient

STORE = "S001"
PHONE = "+33612345678"
TYPED = "06 12 34 56 78"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ea-till-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def phone_forms(e164: str) -> set[bytes]:
    """Every way the number could show up in bytes: its texts (E.164, national, spaced,
    dotted, RFC 3966, digits alone) in UTF-8, UTF-16 (both orders) and UTF-32, hex, base64
    at every alignment, its digits as a big-endian integer, and its unkeyed SHA-256."""
    number = phonenumbers.parse(e164)
    fmt = phonenumbers.PhoneNumberFormat
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    texts = {e164, e164[1:], digits, digits.lstrip("0"), national, national.replace(" ", "."),
             national.replace(" ", "-"), phonenumbers.format_number(number, fmt.INTERNATIONAL),
             phonenumbers.format_number(number, fmt.RFC3966), f"00{e164[1:]}"}
    out: set[bytes] = set()
    for text in texts:
        raw = text.encode()
        out.update({raw, raw.hex().encode(), raw.hex().upper().encode(),
                    text.encode("utf-16-le"), text.encode("utf-16-be"),
                    text.encode("utf-32-le"), hashlib.sha256(raw).hexdigest().encode(),
                    hashlib.sha256(raw).digest()})
        for start in range(3):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = encode(raw[start:])
                out.add(encoded[:-4])  # the last group depends on what follows
    value = int(e164[1:])
    out.add(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    out.add(hashlib.sha256(f"phone:{e164}".encode()).hexdigest().encode())
    return {form for form in out if len(form) >= 5}


def leaks(blob: bytes, forms: set[bytes]) -> list[bytes]:
    return sorted(form for form in forms if form in blob)


class EventStream:
    """The agent's server-sent events (``/v1/events/stream``), recorded in a thread."""

    def __init__(self, sock: Path) -> None:
        self.data = bytearray()
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True,
                                        name="test.sse")
        self._thread.start()

    def _run(self, sock: Path) -> None:
        transport = httpx.HTTPTransport(uds=str(sock))
        try:
            with httpx.Client(transport=transport, base_url="http://agent",
                              timeout=httpx.Timeout(5, read=None)) as client, \
                    client.stream("GET", "/v1/events/stream") as response:
                for chunk in response.iter_bytes():
                    self.data.extend(chunk)
        except httpx.HTTPError:
            return  # the agent stopped: the stream ends

    def join(self) -> None:
        self._thread.join(30)


def _lookup(api: httpx.Client, phone: str) -> dict[str, Any]:
    r = api.post("/v1/customers/lookup", json={"phone": phone})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _status_ok(api: httpx.Client) -> bool:
    try:
        return api.get("/v1/status").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_registered_customer_is_recognised_at_the_till_online_and_offline(
        short_dir: Path, broker: Broker) -> None:
    central = CentralProcess(short_dir / "central", broker.url, [STORE], resend_after=1.0)
    central.start()
    captures = [RawClient(broker.port, subscribe="retail/#")]
    agent = AgentProcess(short_dir / "agent", STORE, broker.url, central)
    agent.config.write_text(agent.config.read_text()
                            .replace(f'id = "{STORE}"\n', f'id = "{STORE}"\ncountry = "FR"\n', 1)
                            .replace('level = "warning"', 'level = "debug"'))
    stream: EventStream | None = None
    try:
        agent.start(target=0, rate=1)
        sock = agent.workdir / "api.sock"
        wait_until(sock.exists, 30, "the API socket")
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=30) as api:
            wait_until(lambda: _status_ok(api), 30, "the API answering")
            stream = EventStream(sock)
            central.api("POST", f"/v1/stores/{STORE}/catalog", json={"items": [
                {"sku": "PHONE-A", "name": "phone", "gtins": ["5901234123457"],
                 "price": "499.00", "currency": "EUR", "uom": "unit", "active": True}]})
            wait_until(lambda: central.query("SELECT state FROM stores WHERE store = ?",
                                             (STORE,)) == [("online",)], 30, "store online")
            assert _lookup(api, TYPED) == {"found": False}

            # 1. registered at central with consent: found at the till by phone
            out = central.api("POST", "/v1/customers", json={
                "ref": "C-NINA", "name": "Nina", "phone": TYPED, "region": "FR",
                "consent": {"recognition": True, "marketing": False},
                "loyalty": {"tier": "gold", "points": 1200},
                "wishlist": ["PHONE-A", "PHONE-B"], "recently_viewed": ["CASE-1"]})
            assert out["ref"] == "C-NINA"
            central.api("POST", "/v1/customers/C-NINA/online-orders", json={
                "order_ref": "WEB-7", "total": "129.90", "currency": "EUR",
                "status": "paid"})
            found = wait_until(
                lambda: (b := _lookup(api, TYPED))["found"]
                and b["customer"]["open_orders"] and b, 60, "the customer at the till")
            customer = found["customer"]
            assert customer["ref"] == "C-NINA"
            assert customer["name"] == "Nina"
            assert customer["loyalty"] == {"tier": "gold", "points": 1200}
            assert customer["wishlist"] == ["PHONE-A", "PHONE-B"]
            assert customer["open_orders"][0]["order_ref"] == "WEB-7"
            assert customer["value"]["channels"] == ["online"]
            assert found["context"]["age_s"] >= 0
            assert _lookup(api, "+33 6 12 34 56 78")["customer"]["ref"] == "C-NINA"

            # 2. the sale carries the customer; central's history joins both channels
            r = api.post("/v1/sales", headers={"Idempotency-Key": "sale-nina"}, json={
                "terminal": "T1", "customer": "C-NINA",
                "lines": [{"sku": "PHONE-A", "qty": 1}],
                "payments": [{"method": "card", "amount": "499.00"}]})
            assert r.status_code == 201, r.text
            wait_until(lambda: central.api("GET", "/v1/customers/C-NINA/value")[
                "channels"] == ["online", "store"], 60, "the store purchase at central")

            # 3. broker stopped: still found (the cache is local)
            broker.stop()
            offline = _lookup(api, TYPED)
            assert offline["found"] is True
            assert offline["customer"]["ref"] == "C-NINA"
            broker.start()
            captures.append(RawClient(broker.port, subscribe="retail/#"))

            # 4. consent withdrawn at central: gone from the till after the next sync
            central.api("POST", "/v1/customers/C-NINA/withdraw")
            wait_until(lambda: _lookup(api, TYPED) == {"found": False}, 60,
                       "the customer gone from the till")
            cached = api.get("/v1/customers/cache").json()
            assert cached["customers"] == 0
        wal = agent.db.with_name(agent.db.name + "-wal")
        wal_live = wal.read_bytes() if wal.exists() else b""
    finally:
        agent.terminate()
        if stream is not None:
            stream.join()
        central.terminate()
        for capture in captures:
            capture.close()

    pepper_b64 = str(central.query("SELECT key FROM customer_keys")[0][0])
    forms = phone_forms(PHONE)
    assert PHONE.encode() in central.db.read_bytes()  # the search finds what is there
    wal_after = wal.read_bytes() if wal.exists() else b""
    payloads = b"\n".join(p for capture in captures for _, p in capture.seen)
    assert b"customers.upsert" in payloads  # the capture saw the customer commands
    assert stream is not None
    assert stream.data.startswith(b": connected")  # the stream was open throughout
    places = {
        "database": agent.db.read_bytes(), "wal (live)": wal_live, "wal (after)": wal_after,
        "agent log": agent.log.read_bytes(), "event stream": bytes(stream.data),
        "mqtt payloads": payloads, "central log": central.log.read_bytes(),
    }
    found_in = {where: leaks(blob, forms) for where, blob in places.items()}
    assert not any(found_in.values()), found_in
    # withdrawn: the profile left nothing behind in the store's files (secure_delete)
    for where in ("database", "wal (after)"):
        blob = places[where]
        at = blob.find(b"Nina")
        assert at < 0, (where, blob[max(0, at - 300):at + 200])
    for where in ("database", "wal (live)", "wal (after)", "agent log", "event stream"):
        assert pepper_b64.encode() not in places[where], where
    assert base64.urlsafe_b64decode(pepper_b64 + "=" * (-len(pepper_b64) % 4)).hex().encode() \
        not in places["agent log"]


@pytest.mark.parametrize("prefix", ["", "x", "xy", '{"phone":"'])
def test_the_search_finds_the_number_however_it_is_written(prefix: str) -> None:
    forms = phone_forms(PHONE)
    for text in (PHONE, "0612345678", "06 12 34 56 78", "+33 6 12 34 56 78"):
        raw = (prefix + text + '"}').encode()
        for blob in (raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode(),
                     (prefix + text).encode("utf-16-le"), (prefix + text).encode("utf-16-be"),
                     hashlib.sha256(text.encode()).hexdigest().encode()):
            assert leaks(b"..." + blob + b"...", forms), (text, blob)
    assert not leaks(b"+33612345679 0612345679", forms)
