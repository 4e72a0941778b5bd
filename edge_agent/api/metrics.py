"""The API's Prometheus figures: the registry of gauges and counters, and their refresh
from the agent's services when ``/metrics`` is scraped."""

from __future__ import annotations

import contextlib
import shutil
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge_agent.errors import EdgeAgentError
from edge_agent.services import AgentServices
from sync.wire import parse_ts, utc_now


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edge_agent_api_requests", "API requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("edge_agent_api_request_seconds", "API request latency",
                                 ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1.0, 2.5))
        self.outbox_pending = Gauge("edge_agent_outbox_pending_events",
                                    "Events not yet acknowledged by central", registry=r)
        self.last_seq = Gauge("edge_agent_ledger_last_seq", "Last seq of the current epoch",
                              registry=r)
        self.db_bytes = Gauge("edge_agent_db_bytes", "Ledger database size", registry=r)
        self.wal_bytes = Gauge("edge_agent_db_wal_bytes", "Ledger WAL size", registry=r)
        self.devices = Gauge("edge_agent_devices", "Configured devices by state", ["state"],
                             registry=r)
        self.counters = Gauge("edge_agent_counter", "Agent counters (monotonic)", ["name"],
                              registry=r)
        self.uptime = Gauge("edge_agent_uptime_seconds", "Seconds since the agent started",
                            registry=r)
        self.broker = Gauge("edge_agent_broker_connected", "1 when the MQTT link is up",
                            registry=r)
        self.outbox_oldest_age = Gauge("edge_agent_outbox_oldest_age_seconds",
                                       "Age of the oldest unacknowledged event", registry=r)
        self.disk_free = Gauge("edge_agent_disk_free_bytes",
                               "Free space where the ledger lives", registry=r)
        self.sync = Gauge("edge_agent_sync", "Sync figures (events published/acknowledged, "
                          "reconnects, commands applied, go-backs, clock offset ms, ...)",
                          ["name"], registry=r)
        self.device_figures = Gauge("edge_agent_device", "Per-device counters",
                                    ["device", "figure"], registry=r)
        self.visitors = Gauge("edge_agent_visitors", "Visitors engine figures "
                              "(presence_shed, open_visits, ...)", ["name"], registry=r)


async def refresh_metrics(services: AgentServices, metrics: Metrics) -> None:
    try:
        stats = await services.ledger.stats()
    except EdgeAgentError:
        stats = None
    if stats is not None:
        metrics.outbox_pending.set(stats.outbox_pending)
        metrics.last_seq.set(stats.last_seq)
        metrics.db_bytes.set(stats.db_bytes)
        metrics.wal_bytes.set(stats.wal_bytes)
    states: dict[str, int] = {"connected": 0, "disconnected": 0, "error": 0}
    for status in services.device_statuses.values():
        states[status.state] = states.get(status.state, 0) + 1
    for state, count in states.items():
        metrics.devices.labels(state).set(count)
    for name, value in services.counters.items():
        metrics.counters.labels(name).set(value)
    metrics.uptime.set(time.monotonic() - services.started_monotonic)
    metrics.broker.set(1 if services.sync is not None and services.sync.connected else 0)
    if stats is not None:
        metrics.outbox_oldest_age.set(_age_s(stats.outbox_oldest_ts))
    with contextlib.suppress(OSError):
        metrics.disk_free.set(shutil.disk_usage(services.ledger.path.parent).free)
    if services.sync is not None:
        _numeric(metrics.sync, services.sync.figures())
    for status in services.device_statuses.values():
        for figure in ("reads", "frames_rejected", "reconnects", "card_data_rejected"):
            metrics.device_figures.labels(status.name, figure).set(getattr(status, figure))
    engine = services.extras.get("visitors")
    figures = getattr(engine, "figures", None)
    if callable(figures):
        _numeric(metrics.visitors, figures())


def _numeric(gauge: Gauge, figures: dict[str, Any]) -> None:
    """Every int/float figure (bools as 0/1) under its name; other values are skipped."""
    for name, value in figures.items():
        if isinstance(value, bool | int | float):
            gauge.labels(name).set(float(value))


def _age_s(ts: str | None) -> float:
    if ts is None:
        return 0.0
    try:
        return max(0.0, (utc_now() - parse_ts(ts)).total_seconds())
    except ValueError:
        return 0.0
