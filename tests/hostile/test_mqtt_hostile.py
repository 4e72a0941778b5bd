"""Hostile MQTT input against a running store sync and a running central (real mosquitto).

A raw paho client publishes, on the store's ``commands`` and ``events/ack`` topics and on
central's ``events`` topic: an oversized payload, invalid UTF-8, JSON nested 100,000 deep,
a valid batch naming another store, another protocol version, a command batch with a gap
and a replayed old command. PROTOCOL §4.3/§5.2: each is dropped or ignored and counted,
nothing is applied twice, and both sides keep working: a real command issued afterwards
is applied, and the store's events still reach central.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from edge_agent.ledger import Ledger
from edge_agent.sync_adapter import LedgerStorePort
from sync.store import StoreSync
from sync.store_settings import SyncSettings
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import CentralProcess, quick_check

STORE = "S001"
T = f"retail/v1/stores/{STORE}"


class RawClient:
    """A paho client that publishes anything and records everything it sees."""

    def __init__(self, port: int, subscribe: str | None = None) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe(subscribe, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Store:
    sync: StoreSync
    ledger: Ledger
    central: CentralProcess


@pytest.fixture
def central(tmp_path: Path, broker: Broker) -> Iterator[CentralProcess]:
    proc = CentralProcess(tmp_path / "central", broker.url, [STORE], resend_after=1.0)
    proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


@contextlib.asynccontextmanager
async def running_store(tmp_path: Path, broker: Broker,
                        central: CentralProcess) -> AsyncIterator[Store]:
    ledger = Ledger.open(tmp_path / "ledger.db", STORE)
    settings = SyncSettings(broker_url=broker.url, central_url=central.url,
                            central_token=SecretStr(f"tok-{STORE}"), resend_after=1.0,
                            digest_interval=1.0, backoff_base=0.1, backoff_max=1.0)
    sync = StoreSync(settings, LedgerStorePort(ledger))
    task = asyncio.create_task(sync.run(), name="test.sync")
    try:
        await until(lambda: sync.connected, "store connected")
        await until(lambda: sync.counters.resyncs >= 1, "first resync")
        yield Store(sync, ledger, central)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


async def until(predicate: Any, what: str, seconds: float = 20) -> None:
    """Poll ``predicate`` (state of other threads/processes, no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def meta(ledger: Ledger, key: str) -> str | None:
    rows = ledger.read_blocking(
        lambda c: c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall())
    return str(rows[0][0]) if rows else None


def on_hand(ledger: Ledger, sku: str) -> int:
    rows = ledger.read_blocking(
        lambda c: c.execute("SELECT on_hand FROM stock WHERE sku = ?", (sku,)).fetchall())
    return int(rows[0][0]) if rows else 0


def adjust(central: CentralProcess, sku: str, delta: int) -> None:
    central.api("POST", f"/v1/stores/{STORE}/adjust", json={
        "reason": "replenishment", "lines": [{"sku": sku, "delta": delta}]})


def command_batch(cseq: int, sku: str = "A-1", delta: int = 5, store: str = STORE,
                  **extra: Any) -> bytes:
    return orjson.dumps({"v": 1, "store": store, "commands": [{
        "cseq": cseq, "id": f"hostile-{cseq}", "type": "stock.adjust",
        "ts": "2026-11-25T09:15:02.123Z", "data": {"reason": "replenishment"},
        "stock": [{"sku": sku, "delta": delta}], "reserve": []}], **extra})


DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_UTF8 = b'{"v":1,"store":"S001","commands":[],"x":"\xff\xfe"}'
HUGE = b'{"v":1,"store":"S001","pad":"' + b"x" * (1024 * 1024 + 10) + b'"}'


async def test_hostile_command_and_ack_payloads_are_dropped_counted_and_survived(
        tmp_path: Path, broker: Broker, central: CentralProcess) -> None:
    raw = RawClient(broker.port)
    try:
        async with running_store(tmp_path, broker, central) as store:
            sync, ledger = store.sync, store.ledger
            await asyncio.to_thread(adjust, central, "A-1", 10)
            await until(lambda: meta(ledger, "applied_cseq") == "1", "cseq 1 applied")
            assert on_hand(ledger, "A-1") == 10

            hostile = [
                (f"{T}/commands", HUGE), (f"{T}/commands", BAD_UTF8),
                (f"{T}/commands", DEEP),
                (f"{T}/commands", command_batch(2, store="S002")),
                (f"{T}/commands", command_batch(2)[:-1] + b',"v":2}'),
                (f"{T}/commands", orjson.dumps({"v": 1, "store": STORE, "commands": []})),
                (f"{T}/commands", command_batch(7)),  # a gap: 2..6 missing
                (f"{T}/commands", command_batch(1, delta=1000)),  # an old cseq replayed
                (f"{T}/events/ack", HUGE), (f"{T}/events/ack", BAD_UTF8),
                (f"{T}/events/ack", DEEP),
                (f"{T}/events/ack", orjson.dumps({"v": 1, "store": "S002", "epoch": "e",
                                                  "through_seq": 5, "ts": "x"})),
                (f"{T}/events/ack", orjson.dumps({"v": 2, "store": STORE, "epoch": "e",
                                                  "through_seq": 5, "ts": "x"})),
            ]
            for topic, payload in hostile:
                await asyncio.to_thread(raw.publish, topic, payload)

            reasons = ("commands:too_large", "commands:invalid_json", "commands:store",
                       "commands:version", "commands:malformed",
                       "events_ack:too_large", "events_ack:invalid_json",
                       "events_ack:store", "events_ack:version")

            def counted() -> bool:
                drops = sync.counters.dropped
                return (all(drops.get(r, 0) >= 1 for r in reasons)
                        and sync.counters.command_gaps >= 1
                        and sync.counters.command_batches >= 3)

            await until(counted, "every hostile payload dropped and counted")
            assert sync.counters.command_gaps >= 1
            # nothing from the hostile batches was applied: the gap and the replay change
            # nothing, and the watermark did not move
            assert meta(ledger, "applied_cseq") == "1"
            assert on_hand(ledger, "A-1") == 10

            # the store keeps working: a real command is applied once, facts still flow
            await asyncio.to_thread(adjust, central, "A-1", 3)
            await until(lambda: meta(ledger, "applied_cseq") == "2", "cseq 2 applied")
            assert on_hand(ledger, "A-1") == 13
            await ledger.write(lambda tx: tx.append("sale", {"n": 1}, stock=[("A-1", -1)]))
            await until(lambda: central.query(
                "SELECT count(*) FROM events WHERE store = ?", (STORE,))[0][0] >= 1,
                "the sale reached central")
            assert sync.connected
    finally:
        raw.close()
    assert quick_check(tmp_path / "ledger.db") == "ok"


async def test_hostile_store_payloads_at_central_are_dropped_and_counted(
        tmp_path: Path, broker: Broker, central: CentralProcess) -> None:
    raw = RawClient(broker.port)
    try:
        for payload in (HUGE, BAD_UTF8, DEEP,
                        orjson.dumps({"v": 1, "store": "S002", "epoch": "e", "events": [
                            {"seq": 1, "id": "x", "type": "sale", "ts": "x", "data": {},
                             "stock": [{"sku": "A-1", "delta": -1}]}]}),
                        orjson.dumps({"v": 1, "store": STORE, "epoch": "e", "events": [
                            {"seq": 1}, {"seq": 3}]})):
            await asyncio.to_thread(raw.publish, f"{T}/events", payload)
        await until(lambda: sum(n for _, n in central.query(
            "SELECT reason, count FROM drops WHERE store = ?", (STORE,))) >= 5,
            "central counted five drops")
        assert central.query("SELECT count(*) FROM events")[0][0] == 0
        assert central.ready()
        # and it still serves a well-formed store
        async with running_store(tmp_path, broker, central) as store:
            await store.ledger.write(
                lambda tx: tx.append("receipt", {"n": 1}, stock=[("A-1", 4)]))
            await until(lambda: central.query(
                "SELECT count(*) FROM events WHERE store = ?", (STORE,))[0][0] == 1,
                "the receipt reached central")
    finally:
        raw.close()
