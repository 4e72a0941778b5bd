"""Store → mosquitto → central drain benchmark (PROTOCOL v1 store side).

    .venv/bin/python -m bench.sync            # 1,000,000-event backlog
    .venv/bin/python -m bench.sync --quick    # 100,000 events

Measured in one run:
- ``ceiling_read``: reading the backlog out of the ledger in outbox batches, as the sender
  does (events/s), the store-side ceiling of any sender;
- ``drain``: the backlog built offline in a real ledger, drained by StoreSync through our
  own mosquitto (``set_tcp_nodelay true``) to a central that applies and acknowledges;
  the clock stops when the store has received the ack of the last event;
- ``naive``: the naive agent, one awaited QoS 1 publish per event (on a subset,
  extrapolated rate; central not even involved, so it is an upper bound of naive);
- ``latency``: commit → ack received at the store (central applied and committed), at
  100 events/s, p50/p99.

The central is the reference ``edge-central`` (a subprocess, SQLite) when it starts;
otherwise a minimal in-bench applier that follows PROTOCOL §4.3 (says which).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from edge_agent.ledger import Ledger, Tx
from edge_agent.sync_adapter import LedgerStorePort
from sync.store import StoreSync
from sync.store_settings import SyncSettings
from sync.wire import canonical_json, now_ts
from tests.helpers.mosquitto import running_broker
from tests.helpers.ports import free_port, wait_for_port

STORE = "S001"


# --------------------------------------------------------------------------- backlog
def build_backlog(path: Path, n: int) -> tuple[float, str]:
    """Record ``n`` sale events offline (1000 per transaction); returns (events/s, epoch)."""
    started = time.perf_counter()
    with Ledger.open(path, STORE) as ledger:
        chunk = 1000

        def op(tx: Tx, base: int) -> None:
            for i in range(base, base + chunk):
                sku = f"SKU-{i % 5000:05d}"
                tx.append(
                    "sale",
                    {"sale_id": f"s{i}", "terminal": "till-1",
                     "lines": [{"sku": sku, "qty": 1, "unit_price": "2.50",
                                "line_total": "2.50"}],
                     "total": "2.50", "currency": "EUR",
                     "payments": [{"method": "cash", "amount": "2.50"}]},
                    stock=[(sku, -1)],
                )

        futures = [ledger.submit(functools.partial(op, base=base)) for base in range(0, n, chunk)]
        for future in futures:
            future.result()
        epoch = ledger.current_epoch
    return n / (time.perf_counter() - started), epoch


def read_ceiling(path: Path, batch: int, max_bytes: int) -> float:
    async def go() -> float:
        with Ledger.open(path, STORE) as ledger:
            epoch = ledger.current_epoch
            started = time.perf_counter()
            after, total = 0, 0
            while True:
                found = await ledger.event_range(epoch, after, max_events=batch,
                                                 max_bytes=max_bytes)
                if found is None:
                    break
                total += found[1] - found[0] + 1
                after = found[1]
            return total / (time.perf_counter() - started)

    return asyncio.run(go())


# --------------------------------------------------------------------------- centrals
@contextlib.contextmanager
def reference_central(workdir: Path, broker_port: int,
                      launcher: Sequence[str] = ()) -> Iterator[str]:
    """``edge-central serve`` as a subprocess; yields its HTTP URL. With ``launcher`` (a
    command that takes a module name and its arguments, e.g. a profiler's), the central
    runs as ``[*launcher, "central", "serve", ...]``."""
    http_port = free_port()
    config = workdir / "central.toml"
    config.write_text(
        f'root = "retail"\n'
        f'database_url = "sqlite:///{workdir}/central.db"\n'
        f'[broker]\nurl = "mqtt://127.0.0.1:{broker_port}"\n'
        f'client_id = "bench-central-{uuid.uuid4().hex[:6]}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
    )
    exe = Path(sys.executable).with_name("edge-central")
    cmd = ([*launcher, "central"] if launcher
           else [str(exe)] if exe.exists() else [sys.executable, "-m", "central"])
    log = (workdir / "central.log").open("wb")
    proc = subprocess.Popen([*cmd, "serve", "--config", str(config), "--log-level", "WARNING"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(http_port, timeout=20)
        time.sleep(0.5)  # MQTT subscriptions in place
        yield f"http://127.0.0.1:{http_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class MiniCentral:
    """Minimal central (fallback): applies in seq order per epoch, hashes, acks."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.applied: dict[str, int] = {}
        self.hashes: dict[tuple[str, int], bytes] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        topic_events = f"retail/v1/stores/{STORE}/events"
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="bench-mini-central",
                                  protocol=aiomqtt.ProtocolVersion.V5, clean_start=True,
                                  socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                  ) as c:
            await c.subscribe(topic_events, qos=1)
            self.ready.set()
            async for message in c.messages:
                batch = orjson.loads(message.payload)
                epoch = batch["epoch"]
                applied = self.applied.get(epoch, 0)
                for event in batch["events"]:
                    seq = event["seq"]
                    if seq <= applied:
                        continue
                    if seq > applied + 1:
                        break
                    self.hashes[(epoch, seq)] = hashlib.sha256(canonical_json(event)).digest()
                    applied = seq
                self.applied[epoch] = applied
                await c.publish(f"retail/v1/stores/{STORE}/events/ack", canonical_json(
                    {"v": 1, "store": STORE, "epoch": epoch, "through_seq": applied,
                     "ts": now_ts()}), qos=1, retain=True)


def _mini_central_main(port: int, ready: Any) -> None:
    """Entry point of the in-bench applier's own process (no GIL shared with the store)."""

    async def go() -> None:
        mini = MiniCentral(port)
        task = asyncio.create_task(mini.run())
        await mini.ready.wait()
        ready.set()
        await task

    asyncio.run(go())


def _echo_main(port: int, ready: Any) -> None:
    """Ceiling "central": acks each batch's last seq without applying anything (paho)."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415 - only this subprocess needs it
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    topic = f"retail/v1/stores/{STORE}/events"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-echo",
                         protocol=mqtt.MQTTv5)

    def on_connect(c: Any, *_: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(*_: Any) -> None:
        ready.set()

    def on_message(c: Any, _u: Any, msg: Any) -> None:
        p: bytes = msg.payload
        start = p.index(b'"epoch":"') + 9
        epoch = p[start:p.index(b'"', start)].decode()
        i = p.rindex(b'"seq":') + 6
        j = i
        while p[j:j + 1].isdigit():
            j += 1
        c.publish(f"{topic}/ack", canonical_json(
            {"v": 1, "store": STORE, "epoch": epoch, "through_seq": int(p[i:j]),
             "ts": now_ts()}), qos=1, retain=True)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, clean_start=True)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_forever()


@contextlib.asynccontextmanager
async def central(kind: str, workdir: Path, port: int) -> AsyncIterator[str]:
    if kind == "reference":
        with reference_central(workdir, port) as url:
            yield url
        return
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    target = _echo_main if kind == "echo" else _mini_central_main
    proc = ctx.Process(target=target, args=(port, ready), daemon=True)
    proc.start()
    try:
        if not await asyncio.to_thread(ready.wait, 20):
            raise RuntimeError("in-bench central did not start")
        yield ""
    finally:
        proc.terminate()
        proc.join(10)


# --------------------------------------------------------------------------- runs
def _settings(url: str, **kw: Any) -> SyncSettings:
    # the agent's own batch and window defaults (SyncSettings)
    base: dict[str, Any] = {"broker_url": url, "digest_interval": 3600, "health_interval": 3600}
    base.update(kw)
    return SyncSettings(**base)


async def drain(db: Path, broker_url: str, n: int, epoch: str) -> dict[str, float]:
    ledger = Ledger.open(db, STORE)
    try:
        port = LedgerStorePort(ledger)
        sync = StoreSync(_settings(broker_url), port)
        started = time.perf_counter()
        task = asyncio.create_task(sync.run(), name="bench.store-sync")
        try:
            while (sync.machine.base(epoch) or 0) < n:  # noqa: ASYNC110 - 5 ms poll
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        counters = sync.counters
        return {"events_per_s": n / elapsed, "seconds": elapsed,
                "batches": counters.batches_published, "gobacks": counters.gobacks,
                "events_published": counters.events_published}
    finally:
        ledger.close()


async def naive(broker_port: int, db: Path, epoch: str, count: int) -> float:
    """One awaited QoS 1 publish per event (the naive agent)."""
    with Ledger.open(db, STORE) as ledger:
        events = await ledger.events_after(epoch, 0, max_events=count, max_bytes=1 << 30)
    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="bench-naive",
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=True) as c:
        topic = f"retail/v1/stores/{STORE}-naive/events"
        started = time.perf_counter()
        for event in events:
            await c.publish(topic, b'{"epoch":"' + epoch.encode() + b'","events":['
                            + event.payload + b'],"store":"S001-naive","v":1}', qos=1)
        return len(events) / (time.perf_counter() - started)


def _latency_sale(tx: Tx, i: int) -> Any:
    return tx.append("sale", {"sale_id": f"lat{i}"}, stock=[("LAT-1", -1)])


async def latency(db: Path, broker_url: str, count: int, rate: float) -> dict[str, float]:
    ledger = Ledger.open(db, STORE)
    try:
        port = LedgerStorePort(ledger)
        sync = StoreSync(_settings(broker_url), port)
        committed: dict[int, float] = {}
        samples: list[float] = []
        original = sync.outbox.handle_ack

        async def timed_ack(epoch: str, through_seq: int, *, live: bool) -> None:
            now = time.perf_counter()
            if live:
                samples.extend(now - committed.pop(seq)
                               for seq in [s for s in committed if s <= through_seq])
            await original(epoch, through_seq, live=live)

        sync.outbox.handle_ack = timed_ack  # type: ignore[method-assign]
        task = asyncio.create_task(sync.run(), name="bench.latency-store")
        try:
            while not sync.connected:  # noqa: ASYNC110 - polling a plain attribute
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            interval = 1.0 / rate
            next_at = time.perf_counter()
            for i in range(count):
                appended = await ledger.write(functools.partial(_latency_sale, i=i))
                committed[appended.seq] = time.perf_counter()
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            deadline = time.perf_counter() + 10
            while committed and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        samples.sort()
        return {
            "count": len(samples),
            "p50_ms": 1000 * statistics.median(samples),
            "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
            "max_ms": 1000 * samples[-1],
            "lost": len(committed),
        }
    finally:
        ledger.close()


def run(quick: bool = False, central_kind: str = "auto") -> dict[str, Any]:
    n = 100_000 if quick else 1_000_000
    naive_n = 3_000 if quick else 10_000
    lat_n = 300 if quick else 1000
    workdir = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        db = workdir / "store" / "ledger.db"
        build_rate, epoch = build_backlog(db, n)
        ceiling = read_ceiling(db, 1000, 1024 * 1024 - 512)
        results: dict[str, Any] = {"events": n, "backlog_build_events_per_s": round(build_rate),
                                   "ceiling_read_events_per_s": round(ceiling)}

        async def echo() -> dict[str, float]:
            copy = workdir / "echo" / "ledger.db"
            copy.parent.mkdir(parents=True)
            for suffix in ("", "-wal"):
                source = Path(f"{db}{suffix}")
                if source.exists():  # noqa: ASYNC240 - before anything runs
                    shutil.copy(source, f"{copy}{suffix}")
            with running_broker(workdir / "broker-echo") as broker:
                async with central("echo", workdir, broker.port):
                    return await drain(copy, broker.url, n, epoch)

        results["ceiling_store_broker_events_per_s"] = round(asyncio.run(echo())["events_per_s"])

        async def go(kind: str) -> dict[str, Any]:
            with running_broker(workdir / f"broker-{kind}") as broker:
                out: dict[str, Any] = {"central": kind}
                async with central(kind, workdir / f"central-{kind}", broker.port):
                    out["drain"] = await drain(db, broker.url, n, epoch)
                    lat_db = workdir / f"latency-{kind}" / "ledger.db"
                    out["latency"] = await latency(lat_db, broker.url, lat_n, 100.0)
                out["naive_events_per_s"] = await naive(broker.port, db, epoch, naive_n)
                return out

        part: dict[str, Any] | None = None
        if central_kind in ("auto", "reference"):
            try:
                (workdir / "central-reference").mkdir(parents=True)
                part = asyncio.run(asyncio.wait_for(go("reference"), timeout=600))
            except Exception as exc:  # fall back, and say so in the output
                if central_kind == "reference":
                    raise
                print(f"reference central unusable ({exc!r}); using the in-bench applier",
                      file=sys.stderr)
                shutil.rmtree(db.parent)
                _, epoch = build_backlog(db, n)
        if part is None:
            part = asyncio.run(go("in-bench"))
        results.update(part)
        rate = results["drain"]["events_per_s"]
        results["ratio_vs_naive"] = round(rate / results["naive_events_per_s"], 1)
        results["ceiling_ratio_vs_naive"] = round(
            results["ceiling_store_broker_events_per_s"] / results["naive_events_per_s"], 1)
        results["ratio_vs_read_ceiling"] = round(rate / ceiling, 3)
        results["ratio_vs_store_broker_ceiling"] = round(
            rate / results["ceiling_store_broker_events_per_s"], 3)
        results["targets"] = {
            "drain_ge_250k_per_s": rate >= 250_000,
            "ge_50x_naive": results["ratio_vs_naive"] >= 50,
            "p99_le_100ms": results["latency"]["p99_ms"] <= 100,
        }
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--central", choices=("auto", "reference", "in-bench"), default="auto",
                        help="auto: the reference edge-central, else the in-bench applier")
    args = parser.parse_args()
    results = run(quick=args.quick, central_kind=args.central)
    d = results["drain"]
    print(f"backlog: {results['events']:,} events (built at "
          f"{results['backlog_build_events_per_s']:,}/s)")
    print(f"central: {results['central']}")
    print(f"ceiling (ledger read): {results['ceiling_read_events_per_s']:>12,} events/s")
    print(f"ceiling (store->broker->ack echo, nothing applied): "
          f"{results['ceiling_store_broker_events_per_s']:,} events/s")
    print(f"drain end to end:      {d['events_per_s']:>12,.0f} events/s  ({d['seconds']:.2f} s, "
          f"{d['batches']} batches, {d['gobacks']} go-backs) = "
          f"{results['ratio_vs_store_broker_ceiling']:.0%} of the store->broker ceiling")
    print(f"naive (1 publish/evt): {results['naive_events_per_s']:>12,.0f} events/s   "
          f"drain/naive {results['ratio_vs_naive']}x, "
          f"store-ceiling/naive {results['ceiling_ratio_vs_naive']}x")
    lat = results["latency"]
    print(f"latency at 100 ev/s:   p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms  "
          f"max {lat['max_ms']:.1f} ms  ({lat['count']} events, {lat['lost']} unacked)")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
