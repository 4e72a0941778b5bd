"""Store ownership on PostgreSQL (issue 21): three central worker processes share twelve
simulated stores through leases on a real PostgreSQL, over a real mosquitto. Each worker
subscribes to its own stores only; workers are SIGKILLed and restarted at random while the
stores stream; at the end nothing is lost or applied twice, every store's stock digest
equals central's, and the fencing log shows no partition ever applied under an older lease
after a newer one."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from central.runs import stock_cells
from central.service import release_client
from central.storage import Database
from sync.messages import Topics
from sync.wire import digest_lines
from tests.helpers.mosquitto import Broker
from tests.helpers.postgres import Postgres
from tests.helpers.processes import ADMIN_TOKEN, CentralProcess, wait_until

pytestmark = pytest.mark.postgres

PARTITIONS = 8
TTL = 3.0
RESEND_AFTER = 2.0


class Worker(CentralProcess):
    """A central worker process on PostgreSQL with ``[ownership]`` on."""

    def __init__(self, workdir: Path, broker_url: str, stores: list[str], db_url: str,
                 index: int) -> None:
        super().__init__(workdir, broker_url, stores)
        self.config.write_text(
            f'database_url = "{db_url}"\nresend_after = 2.0\n'
            f'[broker]\nurl = "{broker_url}"\nclient_id = "central-w{index}"\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\nstore_tokens_dir = "{self.tokens}"\n'
            f'admin_token_file = "{self.admin_file}"\n'
            f'[ownership]\nenabled = true\npartitions = {PARTITIONS}\nlease_ttl_s = {TTL}\n'
            f'worker_name = "w{index}"\n')

    def metrics(self) -> dict[str, float]:
        r = httpx.get(f"{self.url}/metrics", timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        r.raise_for_status()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{label}}}" if label else sample.name] = sample.value
        return out


class StreamingStore:
    """A store as PROTOCOL v1 asks: numbered events kept until acknowledged, resent from
    the ack when it does not move for ``RESEND_AFTER`` or a live ack does not advance."""

    def __init__(self, port: int, store: str) -> None:
        self.store = store
        self.topics = Topics("retail", store)
        self.epoch = str(uuid.uuid4())
        self.events: list[dict[str, Any]] = []
        self.acked = 0
        self.sent = 0
        self.last_progress = time.monotonic()
        self.last_goback = 0.0
        self.lock = threading.Lock()
        self.rng = random.Random(store)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{store}",
                             protocol=mqtt.MQTTv5)
        client.on_message = self._on_message
        client.connect("127.0.0.1", port, clean_start=True)
        client.loop_start()
        client.subscribe([(self.topics.events_ack, 1)])
        self.client = client
        birth = {"v": 1, "store": store, "state": "online", "epoch": self.epoch,
                 "boot_id": str(uuid.uuid4()), "last_seq": 0, "applied_cseq": 0,
                 "agent": "sim/1", "ts": "2026-12-04T21:00:00.000Z"}
        client.publish(self.topics.status, orjson.dumps(birth), qos=1, retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = orjson.loads(message.payload)
        if body.get("epoch") != self.epoch:
            return
        through = int(body["through_seq"])
        now = time.monotonic()
        with self.lock:
            if through > self.acked:
                self.acked = through
                self.last_progress = now
            elif not message.retain and self.sent > through and now - self.last_goback >= 1:
                self.sent = through  # a live ack that does not advance: go back (§4.3)
                self.last_goback = now

    def make(self, n: int) -> None:
        with self.lock:
            for _ in range(n):
                seq = len(self.events) + 1
                self.events.append({
                    "seq": seq, "id": f"{self.store}-{seq}", "type": "sale",
                    "ts": "2026-12-04T21:00:00.000Z", "data": {},
                    "stock": [{"sku": f"K-{self.rng.randrange(5)}",
                               "delta": self.rng.choice((-2, -1, 3))}], "reserve": []})

    def pump(self) -> None:
        now = time.monotonic()
        with self.lock:
            if self.acked < len(self.events) and now - self.last_progress >= RESEND_AFTER:
                self.sent = self.acked
                self.last_progress = now
            start, end = self.sent, len(self.events)
            batch = self.events[start:end]
            self.sent = end
        for first in range(0, len(batch), 50):
            body = {"v": 1, "store": self.store, "epoch": self.epoch,
                    "events": batch[first:first + 50]}
            self.client.publish(self.topics.events, orjson.dumps(body), qos=1)

    def done(self) -> bool:
        with self.lock:
            return self.acked == len(self.events)

    def stock(self) -> dict[str, list[int]]:
        cells: dict[str, list[int]] = {}
        for event in self.events:
            for line in event["stock"]:
                cells.setdefault(line["sku"], [0, 0])[0] += line["delta"]
        return cells


@pytest.fixture
def database(postgres_server: Postgres) -> str:
    url = postgres_server.new_database()
    Database(url).create_schema()
    return url


@pytest.fixture
def workers(tmp_path: Path, broker: Broker, database: str) -> Iterator[list[Worker]]:
    stores = [f"S{i:03d}" for i in range(1, 13)]
    started = [Worker(tmp_path / f"w{i}", broker.url, stores, database, i) for i in range(3)]
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()


def _leases(url: str) -> dict[int, tuple[str | None, int, float]]:
    with Database(url).reading() as conn:
        now = conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")[0][0]
        return {int(p): (w, int(t), float(e) - float(now)) for p, w, t, e in conn.execute(
            "SELECT part, worker, token, expires_at FROM partition_leases")}


def _spread(url: str) -> dict[str, int]:
    held: dict[str, int] = {}
    for worker, _, left in _leases(url).values():
        if worker is not None and left > 0:
            held[worker] = held.get(worker, 0) + 1
    return held


def test_three_workers_share_the_stores_fail_over_and_never_apply_twice(
        workers: list[Worker], broker: Broker, database: str) -> None:
    for worker in workers:
        worker.start()
    # every partition held, spread 3/3/2 across the three workers
    wait_until(lambda: sorted(_spread(database).values()) == [2, 3, 3], 60, "leases spread")
    sims = [StreamingStore(broker.port, f"S{i:03d}") for i in range(1, 13)]
    try:
        scraped = [w.metrics() for w in workers]
        assert sum(m["edge_central_leases_held"] for m in scraped) == PARTITIONS
        assert all(m["edge_central_live_workers"] == 3 for m in scraped)
        assert sum(m["edge_central_lease_changes_total{change=acquired}"] for m in scraped) \
            >= PARTITIONS
        # each worker receives only its own stores' traffic: one batch per store reaches
        # exactly one worker (first every store's birth, one message each, is counted)
        wait_until(lambda: sum(w.metrics()["edge_central_messages_total"] for w in workers)
                   >= len(sims), 30, "births counted")
        before = [w.metrics()["edge_central_messages_total"] for w in workers]
        assert sum(before) == len(sims)
        for sim in sims:
            sim.make(5)
            sim.pump()
        wait_until(lambda: all(s.done() for s in sims), 60, "first batches acked")
        wait_until(lambda: sum(w.metrics()["edge_central_messages_total"] for w in workers)
                   - sum(before) >= len(sims), 30, "messages counted")
        time.sleep(0.5)
        after = [w.metrics()["edge_central_messages_total"] for w in workers]
        assert sum(after) - sum(before) == len(sims), (before, after)
        assert all(a > b for a, b in zip(after, before, strict=True))

        stop = threading.Event()
        producing = threading.Event()
        producing.set()

        def stream() -> None:
            while not stop.is_set():
                for sim in sims:
                    if producing.is_set():
                        sim.make(2)
                    sim.pump()
                stop.wait(0.1)

        driver = threading.Thread(target=stream, name="test.stores", daemon=True)
        driver.start()
        rng = random.Random(21)
        takeovers: list[float] = []
        deadline = time.monotonic() + 35
        kills = 0
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(2, 5))
            victim = rng.choice(workers)
            held = {p for p, (w, _, left) in _leases(database).items()
                    if w is not None and w.startswith(f"w{workers.index(victim)}-") and left > 0}
            victim.kill()
            kills += 1
            killed_at = time.monotonic()
            # its partitions are taken over by the others within the lease time (+ slack)
            if held:
                wait_until(lambda h=held, v=victim: all(
                    (lease := _leases(database)[p])[0] is not None
                    and not lease[0].startswith(f"w{workers.index(v)}-") and lease[2] > 0
                    for p in h), 60, "takeover")
                takeovers.append(time.monotonic() - killed_at)
            time.sleep(rng.uniform(0.3, 2))
            victim.start()
        producing.clear()
        wait_until(lambda: all(s.done() for s in sims), 180, "every event acknowledged")
        stop.set()
        driver.join(10)
        assert kills >= 3
        assert takeovers, "no kill hit a worker holding leases"

        with Database(database).reading() as conn:
            for sim in sims:
                seqs = [int(s) for (s,) in conn.execute(
                    "SELECT seq FROM events WHERE store = ? AND epoch = ? ORDER BY seq",
                    (sim.store, sim.epoch))]
                # lost = duplicated = 0
                assert seqs == list(range(1, len(sim.events) + 1)), sim.store
                central = stock_cells(conn, sim.store)
                assert digest_lines((k, c[0], c[1]) for k, c in central.items()) == \
                    digest_lines((k, c[0], c[1]) for k, c in sim.stock().items()), sim.store
            log = conn.execute("SELECT part, worker, token FROM fencing_log ORDER BY id")
        # the fencing log: per partition, tokens never go back, and each token is one worker
        last: dict[int, int] = {}
        owner: dict[tuple[int, int], str] = {}
        movers: dict[int, set[str]] = {}
        for raw_part, worker, raw_token in log:
            part, token = int(raw_part), int(raw_token)
            assert token >= last.get(part, 0), f"partition {part} applied under an old lease"
            last[part] = token
            assert owner.setdefault((part, token), worker) == worker
            movers.setdefault(part, set()).add(worker)
        assert any(len(ws) > 1 for ws in movers.values()), "no partition changed hands"
        print(f"kills {kills}, takeover seconds {sorted(round(t, 2) for t in takeovers)}")
    finally:
        for sim in sims:
            sim.close()


def test_a_store_added_later_is_subscribed_by_its_owner(
        workers: list[Worker], broker: Broker, database: str) -> None:
    worker = workers[0]
    worker.start()
    wait_until(lambda: _spread(database) and sum(_spread(database).values()) == PARTITIONS,
               60, "one worker holds every partition")
    (worker.tokens / "S099.token").write_text("tok-S099")  # a new store joins the chain
    sim = StreamingStore(broker.port, "S099")
    try:
        sim.make(3)

        def acked() -> bool:
            sim.pump()  # resent every RESEND_AFTER until the owner subscribed
            return sim.done()

        wait_until(acked, 60, "the new store's events acknowledged")
    finally:
        sim.close()
