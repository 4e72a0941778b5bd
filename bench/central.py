"""Fan-in benchmark of the reference central: 1,000 simulated stores against one
``edge-central serve`` process, with SQLite and then PostgreSQL, plus ceilings measured
in the same run.

Run: ``.venv/bin/python -m bench.central [--quick] [--no-postgres]``.

- **central**: 1,000 stores speaking PROTOCOL v1 (event batches of 100, a window of 2
  batches per store, go-back-N on stall) from a few publisher processes, each process one
  MQTT connection for its share of the stores (lightweight, not 1,000 agents). Measured:
  events applied *and acknowledged* per second (the clock stops when every store has its
  last ack), and the p50/p99 latency from a batch's publish to the ack that covers it.
- **ceiling, broker**: raw paho QoS 1 publishes of the same 100-event batches to the same
  broker from the same number of processes (no central, no acks) — events/s.
- **ceiling, database**: raw ``sqlite3`` ``executemany`` of the same event rows, 1000 rows
  per transaction, WAL, ``synchronous=FULL`` — rows/s.
- **paced** (SQLite): the same 1,000 stores each sending one 20-event batch per second
  (20,000 events/s offered, below saturation): the ack latency a store sees in normal
  operation. In the saturating runs the latency is mostly the publishers' own backlog.
- **engine**: ``Core.process`` alone on pre-encoded payloads (no MQTT), SQLite — events/s.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = "retail"
BATCH = 100
WINDOW_BATCHES = 2
PACED_BATCH = 20  # paced run: each store sends 20 events per second (20k events/s)
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def event(seq: int, store_index: int) -> dict[str, Any]:
    return {"seq": seq, "id": f"{store_index:04d}-{seq:08d}",
            "type": "sale", "ts": "2026-11-25T09:15:02.123Z",
            "data": {"sale_id": f"s{seq}", "terminal": "T1", "total": "3.90",
                     "currency": "EUR"},
            "stock": [{"sku": f"SKU-{seq % 50:03d}", "delta": -1}]}


def batch_payload(store: str, store_index: int, epoch: str, first: int, last: int) -> bytes:
    return orjson.dumps({"v": 1, "store": store, "epoch": epoch,
                         "events": [event(s, store_index) for s in range(first, last + 1)]})


# ---------------------------------------------------------------------------- broker
class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            "persistence false\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ---------------------------------------------------------------------------- publishers
def _store_worker(port: int, first_store: int, n_stores: int, per_store: int,  # noqa: PLR0917
                  paced_batch: int, ready: Any, start: Any, results: Any) -> None:
    """Saturating (``paced_batch`` 0: a window of batches per store, refilled on each ack)
    or paced (each store sends one batch of ``paced_batch`` events per second)."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    stores = [f"B{i:04d}" for i in range(first_store, first_store + n_stores)]
    index = {s: i for i, s in enumerate(stores, first_store)}
    epochs = {s: str(uuid.uuid4()) for s in stores}
    nxt = dict.fromkeys(stores, 1)
    acked = dict.fromkeys(stores, 0)
    progress = dict.fromkeys(stores, time.monotonic())
    sent: dict[str, list[tuple[int, float]]] = {s: [] for s in stores}
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    remaining = [len(stores)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{first_store}",
                         protocol=mqtt.MQTTv5)
    subscribed = threading.Event()

    size = paced_batch or BATCH

    def send_more(store: str, paced: bool = False) -> None:
        while nxt[store] <= per_store and (
                paced or nxt[store] - 1 - acked[store] < WINDOW_BATCHES * BATCH):
            first = nxt[store]
            last = min(per_store, first + size - 1)
            payload = batch_payload(store, index[store], epochs[store], first, last)
            client.publish(f"{ROOT}/v1/stores/{store}/events", payload, qos=1)
            sent[store].append((last, time.perf_counter()))
            nxt[store] = last + 1
            if paced:
                return

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        body = orjson.loads(message.payload)
        store = body["store"]
        if store not in acked or message.retain:
            return
        through = body["through_seq"]
        now = time.perf_counter()
        with lock:
            if through <= acked[store]:
                return
            acked[store] = through
            progress[store] = time.monotonic()
            pending = sent[store]
            while pending and pending[0][0] <= through:
                latencies.append(now - pending.pop(0)[1])
            if through >= per_store:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
                return
            if not paced_batch:
                send_more(store)

    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.max_inflight_messages_set(20)
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    client.subscribe(f"{ROOT}/v1/stores/+/events/ack", qos=1)
    subscribed.wait(10)
    ready.put(True)
    start.wait()
    t0 = time.perf_counter()
    if paced_batch:
        rounds = -(-per_store // paced_batch)
        step = 1.0 / len(stores)
        for r in range(rounds):
            for i, store in enumerate(stores):
                delay = t0 + r + i * step - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                with lock:
                    send_more(store, paced=True)
    else:
        with lock:
            for store in stores:
                send_more(store)
    while not done.wait(1.0):
        now = time.monotonic()
        with lock:  # go-back-N for a store whose ack has not moved
            for store in stores:
                if acked[store] < per_store and now - progress[store] > 15:
                    progress[store] = now
                    nxt[store] = acked[store] + 1
                    sent[store].clear()
                    send_more(store, paced=bool(paced_batch))
    t1 = time.perf_counter()
    client.disconnect()
    client.loop_stop()
    results.put({"events": per_store * len(stores), "t0": t0, "t1": t1,
                 "latencies": latencies})


def _raw_publisher(port: int, messages: int, results: Any, start: Any) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(20)
    client.connect("127.0.0.1", port)
    client.loop_start()
    epoch = str(uuid.uuid4())
    start.wait()
    t0 = time.perf_counter()
    infos = []
    for i in range(messages):
        payload = batch_payload("R0001", 1, epoch, i * BATCH + 1, (i + 1) * BATCH)
        infos.append(client.publish(f"{ROOT}/v1/raw/events", payload, qos=1))
        if len(infos) >= 200:
            for info in infos:
                info.wait_for_publish(30)
            infos.clear()
    for info in infos:
        info.wait_for_publish(30)
    t1 = time.perf_counter()
    client.disconnect()
    client.loop_stop()
    results.put({"events": messages * BATCH, "t0": t0, "t1": t1})


def _run_procs(target: Any, args_list: list[tuple[Any, ...]], with_ready: bool
               ) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start = ctx.Event()
    ready = ctx.Queue()
    procs = []
    for args in args_list:
        full = (*args, ready, start, results) if with_ready else (*args, results, start)
        proc = ctx.Process(target=target, args=full, daemon=True)
        proc.start()
        procs.append(proc)
    if with_ready:
        for _ in procs:
            ready.get(timeout=60)
    start.set()
    out = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    return out


# ---------------------------------------------------------------------------- central
class CentralProcess:
    def __init__(self, workdir: Path, broker_port: int, database_url: str) -> None:
        self.http_port = _free_port()
        conf = workdir / "central.toml"
        conf.write_text(
            f'database_url = "{database_url}"\n'
            f'[broker]\nurl = "mqtt://127.0.0.1:{broker_port}"\nusername = ""\n'
            f'client_id = "bench-central-{uuid.uuid4().hex[:6]}"\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
            f'admin_token_file = "{workdir / "admin.token"}"\n')
        self.admin_token_file = workdir / "admin.token"  # generated by the central
        self.log = (workdir / "central.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central", "serve", "--config", str(conf),
             "--log-level", "WARNING"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1)
                if r.json()["mqtt_connected"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("central did not start")
            time.sleep(0.1)

    def counters(self) -> dict[str, Any]:
        token = self.admin_token_file.read_text().strip()
        r = httpx.get(f"http://127.0.0.1:{self.http_port}/v1/status", timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        counters: dict[str, Any] = r.json()["counters"]
        return counters

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def fan_in(workdir: Path, broker: Mosquitto, database_url: str, *, stores: int,
           per_store: int, procs: int, paced_batch: int = 0) -> dict[str, Any]:
    central = CentralProcess(workdir, broker.port, database_url)
    try:
        share = stores // procs
        args = [(broker.port, 1 + i * share + (100_000 if paced_batch else 0), share,
                 per_store, paced_batch) for i in range(procs)]
        results = _run_procs(_store_worker, args, with_ready=True)
        counters = central.counters()
    finally:
        central.stop()
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    total = sum(r["events"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    return {
        "events": total,
        "seconds": round(t1 - t0, 3),
        "events_per_s": round(total / (t1 - t0)),
        "ack_latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1),
        "ack_latency_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1),
        "groups": counters["groups"],
        "events_per_group": round(counters["events_applied"] / max(1, counters["groups"]), 1),
        "duplicates": counters["events_duplicate"],
        "central_writer_busy_s": counters["writer_busy_s"],
        "central_publish_s": counters["writer_publish_s"],
    }


def raw_broker_ceiling(broker: Mosquitto, messages: int, procs: int) -> float:
    results = _run_procs(_raw_publisher,
                         [(broker.port, messages // procs) for _ in range(procs)],
                         with_ready=False)
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    return sum(r["events"] for r in results) / (t1 - t0)


def raw_sqlite_ceiling(workdir: Path, rows: int) -> float:
    conn = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE events (store TEXT, epoch TEXT, seq BIGINT, hash TEXT, "
                 "type TEXT, body TEXT, quarantine TEXT, received TEXT, "
                 "PRIMARY KEY (store, epoch, seq))")
    epoch = str(uuid.uuid4())
    body = orjson.dumps(event(1, 1)).decode()
    started = time.perf_counter()
    for start in range(0, rows, 1000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [("S0001", epoch, s, "0" * 64, "sale", body, None, "ts")
                          for s in range(start + 1, start + 1001)])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


def engine_only(workdir: Path, events: int) -> float:
    from central.core import Core  # noqa: PLC0415
    from central.storage import Database  # noqa: PLC0415

    db = Database(f"sqlite:///{workdir}/engine.db")
    db.create_schema()
    core = Core(db.connect())
    stores = 100
    per_store = events // stores
    messages = []
    for i in range(stores):
        store = f"E{i:04d}"
        epoch = str(uuid.uuid4())
        messages.extend(
            (f"{ROOT}/v1/stores/{store}/events",
             batch_payload(store, i, epoch, first, first + BATCH - 1), False)
            for first in range(1, per_store + 1, BATCH))
    started = time.perf_counter()
    for start in range(0, len(messages), 200):
        core.process(messages[start:start + 200])
    elapsed = time.perf_counter() - started
    core.conn.close()
    return stores * per_store / elapsed


def run(quick: bool = False, postgres: bool = True) -> dict[str, Any]:
    stores = 1000
    per_store = 100 if quick else 600
    procs = 2
    figures: dict[str, Any] = {"stores": stores, "events_per_store": per_store,
                               "batch": BATCH, "publisher_processes": procs}
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        try:
            (work / "sqlite").mkdir()
            figures["sqlite"] = fan_in(work / "sqlite", broker,
                                       f"sqlite:///{work}/sqlite/central.db", stores=stores,
                                       per_store=per_store, procs=procs)
            seconds = 4 if quick else 10
            (work / "paced").mkdir()
            figures["sqlite_paced"] = fan_in(work / "paced", broker,
                                             f"sqlite:///{work}/paced/central.db",
                                             stores=stores, per_store=PACED_BATCH * seconds,
                                             procs=procs, paced_batch=PACED_BATCH)
            if postgres:
                figures["postgres"] = _postgres_fan_in(work, broker, stores, per_store, procs)
            figures["ceiling_broker_events_per_s"] = round(raw_broker_ceiling(
                broker, (stores * per_store // BATCH) // 2, procs))
        finally:
            broker.stop()
        figures["ceiling_sqlite_rows_per_s"] = round(raw_sqlite_ceiling(
            work, 100_000 if quick else 300_000))
        figures["engine_sqlite_events_per_s"] = round(engine_only(
            work, 50_000 if quick else 200_000))
    sq = figures["sqlite"]["events_per_s"]
    figures["ratio_sqlite_vs_broker"] = round(sq / figures["ceiling_broker_events_per_s"], 3)
    figures["ratio_sqlite_vs_raw_sqlite"] = round(sq / figures["ceiling_sqlite_rows_per_s"], 3)
    figures["ratio_sqlite_vs_engine"] = round(sq / figures["engine_sqlite_events_per_s"], 3)
    if "postgres" in figures and isinstance(figures["postgres"], dict) and \
            "events_per_s" in figures["postgres"]:
        figures["ratio_postgres_vs_broker"] = round(
            figures["postgres"]["events_per_s"] / figures["ceiling_broker_events_per_s"], 3)
    return figures


def _postgres_fan_in(work: Path, broker: Mosquitto, stores: int, per_store: int,
                     procs: int) -> dict[str, Any]:
    try:
        from tests.helpers.postgres import (  # noqa: PLC0415
            postgres_unavailable,
            running_postgres,
        )
    except ImportError:
        return {"skipped": "tests.helpers.postgres not importable"}
    reason = postgres_unavailable()
    if reason is not None:
        return {"skipped": reason}
    (work / "pg").mkdir()
    with running_postgres(durable=True) as server:
        return fan_in(work / "pg", broker, server.new_database(), stores=stores,
                      per_store=per_store, procs=procs)


def main() -> None:
    quick = "--quick" in sys.argv
    figures = run(quick=quick, postgres="--no-postgres" not in sys.argv)
    print(f"edge-central fan-in, {figures['stores']} stores x {figures['events_per_store']} "
          f"events, batches of {BATCH}, {figures['publisher_processes']} publisher processes")
    for name in ("sqlite", "sqlite_paced", "postgres"):
        f = figures.get(name)
        if isinstance(f, dict) and "events_per_s" in f:
            print(f"  central + {name:8s}: {f['events_per_s']:>9,} events/s applied+acked; "
                  f"ack p50 {f['ack_latency_p50_ms']} ms, p99 {f['ack_latency_p99_ms']} ms; "
                  f"{f['events_per_group']} events/transaction")
        elif isinstance(f, dict):
            print(f"  central + {name}: skipped ({f.get('skipped')})")
    print(f"  ceiling: raw paho QoS 1 to the broker: {figures['ceiling_broker_events_per_s']:>9,}"
          f" events/s   ratio central/broker {figures['ratio_sqlite_vs_broker']}")
    print(f"  ceiling: raw sqlite executemany FULL:  {figures['ceiling_sqlite_rows_per_s']:>9,}"
          f" rows/s     ratio central/sqlite {figures['ratio_sqlite_vs_raw_sqlite']}")
    print(f"  engine only (Core.process, SQLite):    {figures['engine_sqlite_events_per_s']:>9,}"
          f" events/s   ratio central/engine {figures['ratio_sqlite_vs_engine']}")
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
