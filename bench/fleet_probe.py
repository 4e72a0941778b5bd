"""What a fleet run (:mod:`bench.central_fleet`) is made of, hop by hop and by CPU: the
probe that sees a sample of stores' batches and acks as the broker forwards them, the
split of an ack's latency into hops, central's counters and every part's CPU time sampled
during the run (per thread of central: on a CPU, or runnable and waiting for one), and the
cores the offered load takes at the measured cost per message.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.central import ROOT, CentralProcess
from bench.common import percentile, proc_cpu_seconds

PROBE_EVERY = 100  # one store in 100 is also watched by the probe


def probe(port: int, stores: list[str], ready: Any, stop: Any, results: Any) -> None:
    """A light observer beside the fleet: for a sample of stores it sees each batch and
    each ack as the broker forwards them, on the same monotonic clock as the stores
    (``time.perf_counter``, CLOCK_MONOTONIC on Linux). Batch seen → ack seen is central's
    turnaround (its inbox, writer and outgoing MQTT queue, through the broker both ways)."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    batches: dict[str, dict[int, float]] = {s: {} for s in stores}
    acks: dict[str, dict[int, float]] = {s: {} for s in stores}
    granted = [0]

    def on_subscribe(*_a: Any) -> None:
        granted[0] += 1

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        now = time.perf_counter()
        if message.retain:
            return
        body = orjson.loads(message.payload)
        store = body["store"]
        if message.topic.endswith("/ack"):
            through = int(body["through_seq"])
            seen = acks[store]
            for seq in batches[store]:
                if seq <= through and seq not in seen:
                    seen[seq] = now
        else:
            batches[store].setdefault(int(body["events"][0]["seq"]), now)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-probe",
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    topics = [(f"{ROOT}/v1/stores/{s}/events{rest}", 1) for s in stores for rest in ("", "/ack")]
    for start in range(0, len(topics), 100):
        client.subscribe(topics[start:start + 100])
    deadline = time.monotonic() + 60
    while granted[0] < (len(topics) + 99) // 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    ready.put(0)
    stop.wait()
    client.disconnect()
    client.loop_stop()
    results.put({"batches": batches, "acks": acks})


def hops(out: list[dict[str, Any]], probe: dict[str, Any]) -> dict[str, Any]:
    """Per hop p50/p99 (ms) of the probed stores' batches: store → broker → probe
    (ingress), probe sees batch → probe sees ack (central's turnaround), probe sees ack
    → the store's own receive loop takes it (egress into the simulator)."""
    ingress: list[float] = []
    turnaround: list[float] = []
    egress: list[float] = []
    for r in out:
        for store, seqs in r["hops"].items():
            for seq, times in seqs.items():
                seen = probe["batches"].get(store, {}).get(seq)
                acked = probe["acks"].get(store, {}).get(seq)
                if seen is not None:
                    ingress.append(seen - times[0])
                if seen is not None and acked is not None:
                    turnaround.append(acked - seen)
                if acked is not None and len(times) > 1:
                    egress.append(times[1] - acked)

    def pct(values: list[float]) -> dict[str, float | None]:
        ordered = sorted(values)
        if not ordered:
            return {"p50_ms": None, "p99_ms": None}
        return {"p50_ms": round(percentile(ordered, 0.5) * 1000, 1),
                "p99_ms": round(percentile(ordered, 0.99) * 1000, 1)}

    return {"samples": len(ingress), "acked_at_probe": len(turnaround),
            "acked_at_store": len(egress), "ingress": pct(ingress),
            "central_turnaround": pct(turnaround), "egress": pct(egress)}


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    out = {"machine": _machine_busy_s()}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        out[name] = total
    return out


def _threads(pid: int) -> dict[str, tuple[float, float]]:
    """Per thread of ``pid``: (seconds on a CPU, seconds runnable but waiting for one),
    from /proc/<pid>/task/<tid>/schedstat. Waiting for the GIL or a socket is sleeping,
    not runnable: a thread with a large wait here is starved by the machine's CPUs."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
            out[task.name] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def sample(central: CentralProcess, pids: dict[str, list[int]], stop: threading.Event,
            samples: list[dict[str, Any]]) -> None:
    """Every 2 s during the run: central's own counters (messages in, acks out, its inbox
    = the writer's queue, the writer's busy and publish time) and the CPU time of each
    part (central, broker, the store simulators, the probe) and of the whole machine."""
    while not stop.wait(2.0):
        try:
            c = central.counters()
        except httpx.HTTPError:
            continue
        samples.append({"t": time.perf_counter(), "cpu": _cpu(pids),
                        "threads": _threads(pids["central"][0]), **{k: c[k] for k in (
            "messages", "acks", "inbox", "writer_busy_s", "writer_publish_s")}})


def _thread_rates(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]],
                  span: float) -> list[dict[str, float]]:
    """Central's busiest threads: the share of a CPU each ran, and waited runnable."""
    rows = [{"on_cpu": round((b[t][0] - a[t][0]) / span, 3),
             "waiting_for_cpu": round((b[t][1] - a[t][1]) / span, 3)} for t in b if t in a]
    return sorted(rows, key=lambda r: -r["on_cpu"])[:4]


def rates(samples: list[dict[str, Any]]) -> dict[str, Any]:
    if len(samples) < 2:
        return {}
    a, b = samples[0], samples[-1]
    span = b["t"] - a["t"]
    return {"messages_in_per_s": round((b["messages"] - a["messages"]) / span),
            "acks_out_per_s": round((b["acks"] - a["acks"]) / span),
            "writer_busy_fraction": round((b["writer_busy_s"] - a["writer_busy_s"]) / span, 3),
            "writer_publish_fraction": round(
                (b["writer_publish_s"] - a["writer_publish_s"]) / span, 3),
            "cores_used": {name: round((b["cpu"][name] - a["cpu"][name]) / span, 2)
                           for name in a["cpu"]},
            "cpu_count": os.cpu_count(),
            "central_threads": _thread_rates(a["threads"], b["threads"], span),
            "inbox_max": max(s["inbox"] for s in samples),
            "inbox_samples": [s["inbox"] for s in samples]}


def demand(rates: dict[str, Any], offered: float, achieved: float) -> dict[str, Any]:
    """CPU time per message of each part in this run, and the cores the offered rate
    would take at that cost (central and broker per message central received, the
    simulators per message published). Central's cost per message falls as its groups
    grow, so at a higher rate this overstates central; it is what this run measured."""
    if not rates or not rates["messages_in_per_s"] or not achieved:
        return {}
    cores = rates["cores_used"]
    per = {"central": cores["central"] / rates["messages_in_per_s"],
           "broker": cores["broker"] / rates["messages_in_per_s"],
           "store_simulators": cores["store_simulators"] / achieved}
    return {"cpu_us_per_message": {k: round(v * 1e6) for k, v in per.items()},
            "cores_at_offered_rate": {k: round(v * offered, 2) for k, v in per.items()},
            "cores_demanded": round(sum(per.values()) * offered, 2),
            "cores_got": round(sum(cores[k] for k in per), 2),
            "machine_busy_cores": cores["machine"], "cpu_count": rates["cpu_count"]}
