"""The reference central on a second broker (issue 21): NATS server's MQTT support, which
speaks MQTT 3.1.1 only (no MQTT 5 session options or properties). With ``[broker] protocol =
"3.1.1"`` central connects with a clean session and the protocol runs unchanged: events
applied once and acknowledged live and retained, duplicates recognised, births seen."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import CentralConfig
from central.service import CentralService, release_client
from sync.messages import Topics
from tests.central.conftest import event, wait_until
from tests.helpers.nats import Nats, nats_unavailable, running_nats


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_nats(tmp_path / "nats") as server:
        yield server


class Store311:
    """A store on MQTT 3.1.1: publishes events and a retained birth, records its acks."""

    def __init__(self, port: int, store: str) -> None:
        self.store = store
        self.topics = Topics("retail", store)
        self.epoch = str(uuid.uuid4())
        self.acks: list[tuple[int, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"s-{store}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.subscribe(self.topics.events_ack, 1)
        assert subscribed.wait(20)
        self.client = client

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = orjson.loads(message.payload)
        with self.lock:
            self.acks.append((int(body["through_seq"]), bool(message.retain)))

    def publish(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        self.client.publish(topic, orjson.dumps(body), qos=1, retain=retain).wait_for_publish(20)

    def send(self, events: list[dict[str, Any]]) -> None:
        self.publish(self.topics.events, {"v": 1, "store": self.store, "epoch": self.epoch,
                                          "events": events})

    def live_ack(self, through: int, after: int = 0) -> bool:
        with self.lock:
            return (through, False) in self.acks[after:]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)


def test_central_runs_the_protocol_on_nats_mqtt(nats: Nats, tmp_path: Path) -> None:
    config = CentralConfig.model_validate({
        "database_url": f"sqlite:///{tmp_path}/central.db",
        "broker": {"url": nats.url, "username": None, "client_id": "central-nats",
                   "protocol": "3.1.1"},
        "http": {"admin_token_file": str(tmp_path / "admin.token")}})
    service = CentralService(config)
    service.start()
    store = None
    try:
        assert service.link.connected.wait(30)
        store = Store311(nats.port, "S001")
        store.publish(store.topics.status, {
            "v": 1, "store": "S001", "state": "online", "epoch": store.epoch,
            "boot_id": str(uuid.uuid4()), "last_seq": 0, "applied_cseq": 0, "agent": "t/1",
            "ts": "2026-12-04T21:00:00.000Z"}, retain=True)
        wait_until(lambda: service.core.stores.get("S001") is not None
                   and service.core.stores["S001"].online, what="birth seen")
        store.send([event(1, "A-1", 10, "receipt"), event(2), event(3)])
        wait_until(lambda: store.live_ack(3), what="live ack 3")
        before = len(store.acks)
        store.send([event(2), event(3), event(4)])  # overlap: 2 duplicates, 1 new
        wait_until(lambda: store.live_ack(4, before), what="live ack 4")
        counters = service.core.counters()
        assert (counters.events_applied, counters.events_duplicate) == (4, 2)
        # the ack is retained on NATS too: a store that reconnects finds it
        again = Store311(nats.port, "S001")
        try:
            wait_until(lambda: (4, True) in again.acks, what="retained ack")
        finally:
            again.close()
    finally:
        if store is not None:
            store.close()
        service.stop()
