"""Central at chain scale, on PostgreSQL with store ownership (``[ownership]``): aggregate
fan-in with 1 and then 2 worker processes (the scaling ratio), and the takeover time a store
sees after its worker is SIGKILLed, all in the same run on this machine.

- **fan-in**: the stores of :mod:`bench.central` (batches of 100, a window of 2 batches,
  publisher processes) against 1, then 2 ``edge-central serve`` workers sharing one
  PostgreSQL through leases; events applied *and acknowledged* per second. Repeated in
  alternation (1, 2, 1, 2 …; 5 pairs, 3 quick), each pair's ratio beside the load average
  of its runs, and the median ratio: one pair on a shared machine is not a figure.
- **takeover**: 2 workers, one store of the killed worker's partitions publishing a
  batch every 100 ms; the time from SIGKILL to the first ack of a batch sent after the kill,
  against the configured bound ``lease_ttl_s`` + one heartbeat (``lease_ttl_s / 3``): the
  lease expires at most ``lease_ttl_s`` after the victim's last renewal (so possibly sooner
  than ``lease_ttl_s`` after the kill), and the survivor notices within one heartbeat.

``python -m bench.central_scale [--quick|--tiny]``; in the suite, ``--only central_scale``.
The machine has 2 cores shared with the broker, PostgreSQL and the publishers: the ratio
says what a second worker adds *here*, not on separate hosts.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.central import (
    BATCH,
    ROOT,
    Mosquitto,
    _free_port,
    _run_procs,
    _store_worker,
    batch_payload,
)
from bench.common import Row, scratch_dir
from central.config import store_partition

PARTITIONS = 16
LEASE_TTL_S = 3.0


class Worker:
    def __init__(self, workdir: Path, broker_port: int, database_url: str, tokens: Path,
                 name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = _free_port()
        self.conf = workdir / "central.toml"
        self.conf.write_text(
            f'database_url = "{database_url}"\n'
            f'[broker]\nurl = "mqtt://127.0.0.1:{broker_port}"\nusername = ""\n'
            f'client_id = "bench-{name}-{uuid.uuid4().hex[:6]}"\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\nstore_tokens_dir = "{tokens}"\n'
            f'admin_token_file = "{workdir / "admin.token"}"\n'
            f'[ownership]\nenabled = true\npartitions = {PARTITIONS}\n'
            f'lease_ttl_s = {LEASE_TTL_S}\nworker_name = "{name}"\n')
        self.log = (workdir / "central.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central", "serve", "--config", str(self.conf),
             "--log-level", "WARNING"], stdout=self.log, stderr=self.log)
        _until(self._ready, 60, "worker ready")

    def _ready(self) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return bool(r.json().get("mqtt_connected"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()


def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.05)


def _leases(url: str) -> dict[int, str | None]:
    from central.storage import Database  # noqa: PLC0415

    with Database(url).reading() as conn:
        return {int(p): w for p, w in conn.execute(
            "SELECT part, worker FROM partition_leases WHERE expires_at > "
            "EXTRACT(EPOCH FROM clock_timestamp())")}


def _spread_ok(url: str, workers: int) -> bool:
    leases = _leases(url)
    owners = [w for w in leases.values() if w]
    return len(owners) == PARTITIONS and len(set(owners)) == workers


def fan_in(work: Path, broker: Mosquitto, url: str, tokens: Path, workers: int, *,
           stores: int, per_store: int, procs: int, first_store: int) -> dict[str, Any]:
    started = [Worker(work / f"w{i}", broker.port, url, tokens, f"w{i}")
               for i in range(workers)]
    try:
        _until(lambda: _spread_ok(url, workers), 60, "leases spread")
        share = stores // procs
        args = [(broker.port, first_store + i * share, share, per_store, 0)
                for i in range(procs)]
        results = _run_procs(_store_worker, args, with_ready=True)
    finally:
        for worker in started:
            worker.stop()
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    total = sum(r["events"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    return {"workers": workers, "events": total, "seconds": round(t1 - t0, 3),
            "events_per_s": round(total / (t1 - t0)),
            "ack_latency_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1)}


def takeover(work: Path, broker: Mosquitto, url: str, tokens: Path) -> dict[str, Any]:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    workers = [Worker(work / f"t{i}", broker.port, url, tokens, f"t{i}") for i in range(2)]
    try:
        _until(lambda: _spread_ok(url, 2), 60, "leases spread")
        leases = _leases(url)
        victim = workers[0]
        victim_name = next(w for w in leases.values() if w and w.startswith("t0-"))
        store = next(f"B{i:04d}" for i in range(1, 5000)
                     if leases[store_partition(f"B{i:04d}", PARTITIONS)] == victim_name
                     and (tokens / f"B{i:04d}.token").exists())
        epoch = str(uuid.uuid4())
        acked: list[tuple[int, float]] = []
        lock = threading.Lock()

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            body = orjson.loads(message.payload)
            if body.get("epoch") == epoch and not message.retain:
                with lock:
                    acked.append((int(body["through_seq"]), time.monotonic()))

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-take-{store}",
                             protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.connect("127.0.0.1", broker.port, clean_start=True)
        client.loop_start()
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        client.subscribe(f"{ROOT}/v1/stores/{store}/events/ack", qos=1)
        subscribed.wait(30)
        seq = 0

        def send() -> None:
            nonlocal seq
            seq += 1
            client.publish(f"{ROOT}/v1/stores/{store}/events",
                           batch_payload(store, 1, epoch, 1, seq), qos=1)

        while not any(s >= 1 for s, _ in acked):  # the owner acknowledges (live)
            send()
            time.sleep(0.2)
        victim.kill()
        killed = time.monotonic()
        first_after = seq + 1
        while True:
            send()
            with lock:
                hit = [t for s, t in acked if s >= first_after]
            if hit:
                seconds = hit[0] - killed
                break
            if time.monotonic() - killed > 120:
                raise RuntimeError("no takeover within 120 s")
            time.sleep(0.1)
        client.disconnect()
        client.loop_stop()
    finally:
        for worker in workers:
            worker.kill()
    return {"takeover_s": round(seconds, 3), "lease_ttl_s": LEASE_TTL_S,
            "bound_s": LEASE_TTL_S * 4 / 3}


def _reps(quick: bool, tiny: bool) -> int:
    return 2 if tiny else 3 if quick else 5


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    from tests.helpers.postgres import postgres_unavailable, running_postgres  # noqa: PLC0415

    reason = postgres_unavailable()
    if reason is not None:
        return {"skipped": reason}
    stores = 100 if tiny else 200 if quick else 400
    per_store = 200 if tiny else 1000
    reps = _reps(quick, tiny)
    procs = 2
    from central.storage import Database  # noqa: PLC0415

    with scratch_dir("bench-central-scale-") as work:
        tokens = work / "tokens"
        tokens.mkdir()
        for i in range(1, 1 + 2 * reps * stores):
            (tokens / f"B{i:04d}.token").write_text("x")
        broker = Mosquitto(work)
        try:
            with running_postgres(durable=True) as server:
                figures: dict[str, Any] = {"stores": stores, "events_per_store": per_store,
                                           "batch": BATCH, "partitions": PARTITIONS,
                                           "reps": []}
                # alternated 1, 2, 1, 2 …: a change of the machine's load hits both alike
                for rep in range(reps):
                    pair: dict[str, Any] = {}
                    for workers in (1, 2):
                        url = server.new_database()
                        Database(url).create_schema()
                        first = 1 + (2 * rep + workers - 1) * stores  # fresh store ids
                        pair[f"fan_in_{workers}"] = fan_in(
                            work / f"fan{rep}-{workers}", broker, url, tokens, workers,
                            stores=stores, per_store=per_store, procs=procs,
                            first_store=first) | {"loadavg_1m": os.getloadavg()[0]}
                    pair["ratio"] = round(pair["fan_in_2"]["events_per_s"]
                                          / pair["fan_in_1"]["events_per_s"], 3)
                    figures["reps"].append(pair)
                url = server.new_database()
                Database(url).create_schema()
                figures["takeover"] = takeover(work / "takeover", broker, url, tokens)
        finally:
            broker.stop()
    pairs = figures["reps"]
    for workers in (1, 2):
        figures[f"fan_in_{workers}_median"] = statistics.median(
            p[f"fan_in_{workers}"]["events_per_s"] for p in pairs)
    figures["scaling_ratio"] = round(statistics.median(p["ratio"] for p in pairs), 3)
    figures["scaling_ratios"] = [p["ratio"] for p in pairs]
    figures["loadavgs"] = [round(p[k]["loadavg_1m"], 2) for p in pairs
                           for k in ("fan_in_1", "fan_in_2")]
    figures["loadavg_1m"] = os.getloadavg()[0]
    return figures


def rows(f: dict[str, Any]) -> list[Row]:
    g = "central scale"
    if "skipped" in f:
        return [Row(g, "PostgreSQL fan-in", None, "", note=f"skipped: {f['skipped']}")]
    n = len(f["reps"])
    note = (f"{f['stores']} stores x {f['events_per_store']} events, PostgreSQL, leases; "
            f"median of {n} alternated runs 1,2,1,2…")
    loads = f["loadavgs"]
    take = f["takeover"]
    p99 = [p["fan_in_2"]["ack_latency_p99_ms"] for p in f["reps"]]
    p99_one = [p["fan_in_1"]["ack_latency_p99_ms"] for p in f["reps"]]
    return [
        Row(g, "fan-in, 2 workers", f["fan_in_2_median"], "events/s",
            f["fan_in_1_median"], "1 worker, same run", note=note),
        Row(g, "scaling ratio, 2 workers / 1 (median of pairs)", f["scaling_ratio"], "x",
            note=f"pairs {', '.join(f'{r:.2f}' for r in f['scaling_ratios'])}; load average "
                 f"{min(loads):.1f}-{max(loads):.1f} over the runs; 2 cores shared with "
                 "PostgreSQL, the broker and the publishers"),
        Row(g, "ack p99, 2 workers (saturating)", statistics.median(p99), "ms",
            statistics.median(p99_one), "1 worker"),
        Row(g, "takeover after SIGKILL (store's next ack)", take["takeover_s"], "s",
            take["bound_s"], "configured bound: lease + heartbeat", "≤ bound",
            take["takeover_s"] <= take["bound_s"] + 1.0,
            note=f"lease_ttl_s = {take['lease_ttl_s']}; +1 s for the ack round trip"),
    ]


def main() -> None:
    f = run(quick="--quick" in sys.argv[1:], tiny="--tiny" in sys.argv[1:])
    if "skipped" in f:
        print(f"skipped: {f['skipped']}")
        return
    for i, pair in enumerate(f["reps"], 1):
        for key in ("fan_in_1", "fan_in_2"):
            r = pair[key]
            print(f"run {i}, {r['workers']} worker(s): {r['events_per_s']:>8,} events/s "
                  f"applied+acked ({r['events']:,} events, {r['seconds']} s), ack p99 "
                  f"{r['ack_latency_p99_ms']} ms, load average {r['loadavg_1m']:.2f}")
        print(f"run {i}: ratio 2/1 = {pair['ratio']}")
    print(f"median: 1 worker {f['fan_in_1_median']:,} events/s, 2 workers "
          f"{f['fan_in_2_median']:,} events/s; scaling ratio (median of pairs) "
          f"{f['scaling_ratio']}")
    print(f"takeover after SIGKILL: {f['takeover']['takeover_s']} s "
          f"(lease time {f['takeover']['lease_ttl_s']} s, bound {f['takeover']['bound_s']} s)")


if __name__ == "__main__":
    main()
