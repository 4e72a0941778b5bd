"""Fixtures for the reference central: databases (SQLite and a real PostgreSQL), an
in-process central on a real broker, and a fake store speaking PROTOCOL v1 over paho."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from central.api import create_app
from central.config import CentralConfig
from central.core import Core
from central.service import CentralService, release_client
from central.storage import Database
from sync.messages import Topics
from tests.helpers.mosquitto import Broker
from tests.helpers.ports import free_port, wait_for_port
from tests.helpers.postgres import Postgres, postgres_unavailable, running_postgres

ADMIN_TOKEN = "admin-secret-token"  # noqa: S105 - test-only token


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/central.db"
    server: Postgres = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def core(tmp_path: Path) -> Core:
    """A central engine on a fresh SQLite file (a module may define its own ``core``)."""
    db = Database(f"sqlite:///{tmp_path}/c.db")
    db.create_schema()
    return Core(db.connect())


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


def event(seq: int, sku: str = "A-1", delta: int = -1, kind: str = "sale",
          **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"seq": seq, "id": f"ev-{seq}-{uuid.uuid4().hex[:6]}", "type": kind,
                            "ts": "2026-11-25T09:15:02.123Z", "data": {},
                            "stock": [{"sku": sku, "delta": delta}], "reserve": []}
    body.update(extra)
    return body


class FakeStore:
    """A store as central sees it: publishes batches, births, acks; records what it gets."""

    def __init__(self, port: int, store: str, root: str = "retail",
                 username: str | None = None, password: str | None = None) -> None:
        self.store = store
        self.topics = Topics(root, store)
        self.epoch = str(uuid.uuid4())
        self.boot_id = str(uuid.uuid4())
        self.acks: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{store}-{uuid.uuid4()}",
                             protocol=mqtt.MQTTv5)
        if username:
            client.username_pw_set(username, password)
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: self.subscribed.set()
        client.connect("127.0.0.1", port, clean_start=True)
        client.loop_start()
        client.subscribe([(self.topics.events_ack, 1), (self.topics.commands, 1)])
        self.client = client
        assert self.subscribed.wait(20)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = orjson.loads(message.payload)
        with self.lock:
            if message.topic == self.topics.events_ack:
                self.acks.append(body | {"_retained": bool(message.retain)})
            else:
                self.commands.extend(body["commands"])

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(20)

    def send(self, events: list[dict[str, Any]], epoch: str | None = None,
             **extra: Any) -> None:
        body = {"v": 1, "store": self.store, "epoch": epoch or self.epoch, "events": events}
        body.update(extra)
        self.publish(self.topics.events, orjson.dumps(body))

    def birth(self, last_seq: int = 0, applied_cseq: int | None = 0,
              boot_id: str | None = None) -> None:
        body: dict[str, Any] = {"v": 1, "store": self.store, "state": "online",
                                "epoch": self.epoch, "boot_id": boot_id or self.boot_id,
                                "last_seq": last_seq, "agent": "fake/1",
                                "ts": "2026-11-25T09:00:00.000Z"}
        if applied_cseq is not None:
            body["applied_cseq"] = applied_cseq
        self.publish(self.topics.status, orjson.dumps(body), retain=True)

    def death(self, boot_id: str | None = None) -> None:
        body = {"v": 1, "store": self.store, "state": "offline", "epoch": self.epoch,
                "boot_id": boot_id or self.boot_id}
        self.publish(self.topics.status, orjson.dumps(body), retain=True)

    def command_ack(self, through: int) -> None:
        body = {"v": 1, "store": self.store, "epoch": self.epoch, "through_cseq": through,
                "ts": "2026-11-25T09:00:00.000Z"}
        self.publish(self.topics.commands_ack, orjson.dumps(body), retain=True)

    def wait_ack(self, through: int, epoch: str | None = None, timeout: float = 20.0,
                 after: int = 0) -> dict[str, Any]:
        epoch = epoch or self.epoch

        def found() -> dict[str, Any] | None:
            with self.lock:
                for ack in self.acks[after:]:
                    if ack["epoch"] == epoch and ack["through_seq"] == through:
                        return ack
            return None

        result: dict[str, Any] = wait_until(found, timeout, f"ack {through} of {epoch}")
        return result

    def ack_count(self) -> int:
        with self.lock:
            return len(self.acks)

    def cseqs(self) -> list[int]:
        with self.lock:
            return [c["cseq"] for c in self.commands]


class Central:
    """An in-process central (MQTT + writer threads) plus an HTTP client for its API."""

    def __init__(self, broker: Broker, db_url: str, tmp_path: Path,
                 resend_after: float = 10.0, omni: dict[str, Any] | None = None) -> None:
        tokens = tmp_path / "tokens"
        tokens.mkdir(exist_ok=True)
        (tokens / "S001.token").write_text("token-s001\n")
        (tokens / "S002.token").write_text("token-s002\n")
        admin = tmp_path / "admin.token"
        admin.write_text(ADMIN_TOKEN)
        self.config = CentralConfig.model_validate({
            "database_url": db_url, "resend_after": resend_after,
            "broker": {"url": broker.url, "username": None,
                       "client_id": f"central-{uuid.uuid4().hex[:8]}"},
            "http": {"store_tokens_dir": str(tokens), "admin_token_file": str(admin)},
            "omni": omni or {},
        })
        self.service = CentralService(self.config)
        self.service.start()
        assert self.service.link.connected.wait(30)
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(self.service), host="127.0.0.1", port=port, log_level="warning",
            lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, name="test.http", daemon=True)
        self._thread.start()
        wait_for_port(port)
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self._thread.join(10)
        self.service.stop()

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.http.get(path, headers=self.admin, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.http.post(path, headers=self.admin, json=body)
        assert response.status_code == expect, response.text
        return response.json()

    def stock(self, store: str) -> dict[str, tuple[int, int]]:
        rows = self.get(f"/v1/stores/{store}/stock")["stock"]
        return {r["sku"]: (r["on_hand"], r["reserved"]) for r in rows}

    def alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        alerts: list[dict[str, Any]] = self.get("/v1/alerts", params=params)["alerts"]
        return alerts

    def sync(self) -> None:
        """Wait until the writer has drained everything published so far (a no-op job
        queued behind the messages already in its inbox)."""
        self.service.call(lambda _core: (None, []))


@pytest.fixture
def make_central(broker: Broker, db_url: str, tmp_path: Path
                 ) -> Iterator[Callable[..., Central]]:
    started: list[Central] = []

    def make(**kwargs: Any) -> Central:
        central = Central(broker, db_url, tmp_path, **kwargs)
        started.append(central)
        return central

    yield make
    for central in started:
        central.stop()


@pytest.fixture
def central(make_central: Callable[..., Central]) -> Central:
    return make_central()


@pytest.fixture
def make_store(broker: Broker) -> Iterator[Callable[[str], FakeStore]]:
    stores: list[FakeStore] = []

    def make(store: str = "S001") -> FakeStore:
        fake = FakeStore(broker.port, store)
        stores.append(fake)
        return fake

    yield make
    for fake in stores:
        fake.close()
