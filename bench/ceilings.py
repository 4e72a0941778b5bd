"""This machine's ceilings, measured first in the suite's run (nothing of ours in the loop).

Run: ``.venv/bin/python -m bench.ceilings [--quick]``.

- **SQLite batched insert**: stdlib ``sqlite3`` ``executemany`` of a ~250-byte event row,
  1000 rows per transaction, WAL, ``synchronous=FULL`` and ``NORMAL``;
- **MQTT QoS 1 publish**: paho-mqtt to a private local mosquitto (``set_tcp_nodelay``),
  a window of 20 unacknowledged messages, 20 KB messages of 100 events and one-event
  messages; the clock stops at the last PUBACK;
- **bare parse loop**: EM4100 frames found with ``bytes.find`` and deduplicated in a dict
  of last-seen times (no validation, no objects): the ceiling of any driver;
- **serialisation**: ``json.dumps``/``loads`` against ``orjson`` on one event dict.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.common import Row, best_of, print_rows, running_broker, scratch_dir
from drivers.em4100 import encode_em4100

EVENT: dict[str, Any] = {
    "seq": 123456, "id": "5f0c2d9e-8a11-4c1b-9a8e-0b6f3a527d1e", "type": "sale",
    "ts": "2026-11-25T09:15:02.123Z",
    "data": {"sale_id": "0b6f3a52-7d1e-4c1b-9a8e-3f0c2d9e8a11", "terminal": "T1",
             "lines": [{"sku": "A-100", "qty": 2, "unit_price": "1.95", "line_total": "3.90"}],
             "total": "3.90", "currency": "EUR",
             "payments": [{"method": "card", "amount": "3.90"}]},
    "stock": [{"sku": "A-100", "delta": -2}],
}
# The wire's event in a 20 KB batch of 100 (PROTOCOL §4): ~200 bytes each.
WIRE_EVENT: dict[str, Any] = {
    "seq": 123456, "id": "5f0c2d9e-8a11-4c1b-9a8e-0b6f3a527d1e", "type": "sale",
    "ts": "2026-11-25T09:15:02.123Z",
    "data": {"sale_id": "s-000123456", "lines": [{"sku": "A-100", "qty": 2}], "total": "3.90"},
    "stock": [{"sku": "A-100", "delta": -2}],
}
WINDOW = 20
EVENTS_PER_MESSAGE = 100


def _sizes(quick: bool, tiny: bool) -> dict[str, int]:
    if tiny:
        return {"rows": 2_000, "big": 100, "small": 500, "dicts": 2_000, "frames": 2_000}
    if quick:
        return {"rows": 50_000, "big": 3_000, "small": 20_000, "dicts": 50_000,
                "frames": 50_000}
    return {"rows": 300_000, "big": 15_000, "small": 100_000, "dicts": 200_000,
            "frames": 200_000}


# --------------------------------------------------------------------------- SQLite
def sqlite_insert(directory: Path, rows: int, synchronous: str, batch: int = 1000) -> float:
    """Rows/s of raw batched inserts (the ceiling of any ledger write)."""
    path = directory / f"raw-{synchronous}-{uuid.uuid4().hex[:6]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, epoch_ordinal INTEGER, "
                     "seq INTEGER, event_id TEXT, type TEXT, ts TEXT, payload BLOB)")
        payload = orjson.dumps(EVENT, option=orjson.OPT_SORT_KEYS)
        started = time.perf_counter()
        seq = 0
        while seq < rows:
            chunk = [((1 << 40) | s, 1, s, "id", "sale", "ts", payload)
                     for s in range(seq + 1, min(rows, seq + batch) + 1)]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", chunk)
            conn.execute("COMMIT")
            seq += len(chunk)
        return rows / (time.perf_counter() - started)
    finally:
        conn.close()


# --------------------------------------------------------------------------- MQTT
def batch_message(events: int) -> bytes:
    """A PROTOCOL-shaped batch of ``events`` sale events (~200 B each)."""
    batch = {"v": 1, "store": "S001", "epoch": str(uuid.UUID(int=1)),
             "events": [dict(WIRE_EVENT, seq=i + 1) for i in range(events)]}
    return orjson.dumps(batch, option=orjson.OPT_SORT_KEYS)


def mqtt_publish(port: int, messages: int, payload: bytes, window: int = WINDOW) -> float:
    """Messages/s of paho QoS 1 publishes with at most ``window`` unacknowledged."""
    slots = threading.Semaphore(window)
    acked = threading.Event()
    state = {"acks": 0}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-ceiling-{port}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(window)
    connected = threading.Event()

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        sock = c.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            import socket  # noqa: PLC0415

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connected.set()

    def on_publish(*_: Any) -> None:
        state["acks"] += 1
        slots.release()
        if state["acks"] >= messages:
            acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("paho did not connect to the private mosquitto")
        topic = "bench/ceiling"
        started = time.perf_counter()
        for _ in range(messages):
            slots.acquire()
            info = client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"paho publish failed: rc={info.rc}")
        if not acked.wait(120):
            raise RuntimeError(f"only {state['acks']} of {messages} PUBACKs")
        return messages / (time.perf_counter() - started)
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------- parse
def em4100_buffer(frames: int, tags: int = 64) -> bytes:
    ids = [f"{0x0A00000000 + i * 7919:010X}" for i in range(tags)]
    return b"".join(encode_em4100(ids[i % tags]) for i in range(frames))


def bare_parse(buf: bytes) -> int:
    """``bytes.find`` STX..ETX, slice the id, remember when it was last seen."""
    seen: dict[bytes, float] = {}
    now = time.monotonic()
    find = buf.find
    pos, n = 0, 0
    while True:
        start = find(b"\x02", pos)
        if start < 0:
            break
        end = find(b"\x03", start + 1)
        if end < 0:
            break
        seen[buf[start + 1:start + 11]] = now
        pos = end + 1
        n += 1
    return n


# --------------------------------------------------------------------------- serialisation
def serialisation(dicts: int) -> dict[str, float]:
    def json_dumps() -> None:
        dumps = json.dumps
        for _ in range(dicts):
            dumps(EVENT, sort_keys=True, separators=(",", ":"))

    def orjson_dumps() -> None:
        dumps, opt = orjson.dumps, orjson.OPT_SORT_KEYS
        for _ in range(dicts):
            dumps(EVENT, option=opt)

    encoded = orjson.dumps(EVENT, option=orjson.OPT_SORT_KEYS)

    def json_loads() -> None:
        loads = json.loads
        for _ in range(dicts):
            loads(encoded)

    def orjson_loads() -> None:
        loads = orjson.loads
        for _ in range(dicts):
            loads(encoded)

    return {name: dicts / best_of(fn, 3)[0] for name, fn in (
        ("json_dumps_per_s", json_dumps), ("orjson_dumps_per_s", orjson_dumps),
        ("json_loads_per_s", json_loads), ("orjson_loads_per_s", orjson_loads))}


# --------------------------------------------------------------------------- run
def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    sizes = _sizes(quick, tiny)
    out: dict[str, Any] = {}
    with scratch_dir("bench-ceilings-") as work:
        for sync in ("FULL", "NORMAL"):  # best of two: the least disturbed by other load
            out[f"sqlite_{sync.lower()}_rows_per_s"] = max(
                sqlite_insert(work, sizes["rows"], sync) for _ in range(2))
        big = batch_message(EVENTS_PER_MESSAGE)
        small = batch_message(1)
        out["mqtt_big_message_bytes"] = len(big)
        out["mqtt_small_message_bytes"] = len(small)
        with running_broker(work / "broker") as broker:
            big_rate = mqtt_publish(broker.port, sizes["big"], big)
            small_rate = mqtt_publish(broker.port, sizes["small"], small)
        out["mqtt_qos1_big_msgs_per_s"] = big_rate
        out["mqtt_qos1_big_events_per_s"] = big_rate * EVENTS_PER_MESSAGE
        out["mqtt_qos1_small_msgs_per_s"] = small_rate
    buf = em4100_buffer(sizes["frames"])
    seconds, frames = best_of(lambda: bare_parse(buf), 3)
    out["bare_parse_frames_per_s"] = frames / seconds
    out.update(serialisation(sizes["dicts"]))
    out["window"] = WINDOW
    return out


def rows(f: dict[str, Any]) -> list[Row]:
    g = "ceilings"
    return [
        Row(g, "SQLite executemany, 1000 rows/txn, FULL", f["sqlite_full_rows_per_s"],
            "rows/s", f["sqlite_normal_rows_per_s"], "same, NORMAL"),
        Row(g, "SQLite executemany, 1000 rows/txn, NORMAL", f["sqlite_normal_rows_per_s"],
            "rows/s"),
        Row(g, f"paho QoS 1, window {WINDOW}, {f['mqtt_big_message_bytes'] // 1024} KB "
               f"messages of {EVENTS_PER_MESSAGE} events", f["mqtt_qos1_big_events_per_s"],
            "ev/s", f["mqtt_qos1_small_msgs_per_s"], "one event per message"),
        Row(g, f"paho QoS 1, window {WINDOW}, {f['mqtt_big_message_bytes'] // 1024} KB messages",
            f["mqtt_qos1_big_msgs_per_s"], "msg/s"),
        Row(g, f"paho QoS 1, window {WINDOW}, {f['mqtt_small_message_bytes']} B messages",
            f["mqtt_qos1_small_msgs_per_s"], "msg/s"),
        Row(g, "bare EM4100 bytes.find + dict dedup", f["bare_parse_frames_per_s"],
            "frames/s"),
        Row(g, "orjson.dumps (event dict)", f["orjson_dumps_per_s"], "dicts/s",
            f["json_dumps_per_s"], "json.dumps"),
        Row(g, "orjson.loads (event)", f["orjson_loads_per_s"], "dicts/s",
            f["json_loads_per_s"], "json.loads"),
    ]


def main() -> None:
    figures = run(quick="--quick" in sys.argv, tiny="--tiny" in sys.argv)
    print_rows("ceilings of this machine", rows(figures))


if __name__ == "__main__":
    main()
