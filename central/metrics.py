"""Prometheus metrics of the central (``GET /metrics``, operator token): ingest counters,
the writer queue, per-store backlog and lag, alerts by kind (conflicts, quarantines,
restores) and, when store ownership is leased, lease changes.

Collected at scrape time: the in-memory watermarks are copied by a job on the writer thread
(the only thread that touches them), the rest is read on a fresh read connection. Per-store
series are labelled ``store``: 10,000 stores are 10,000 series per per-store metric.

- backlog: events a store is known to hold beyond what central applied, per epoch summed
  (``max(highest seq seen, the live birth's last_seq) - applied``);
- lag: seconds since central last advanced a store that has a backlog (0 without one),
  sampled at each scrape, so its resolution is the scrape interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.params import Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from central.core import Core, Publish
    from central.service import CentralService


@dataclass(frozen=True, slots=True)
class _Watermarks:
    applied: dict[tuple[str, str], int]
    seen: dict[tuple[str, str], int]
    quarantined: dict[str, int]
    online: dict[str, bool]


def _copy_watermarks(core: Core) -> tuple[_Watermarks, list[Publish]]:
    return _Watermarks(dict(core.applied), dict(core.max_seen),
                       {s: st.quarantined for s, st in core.stores.items()},
                       {s: st.online for s, st in core.stores.items()}), []


ExtraCollect = Callable[[], Iterator[Metric]]
"""Further metric families (store ownership's leases) added by other modules."""


class CentralCollector(Collector):
    """Everything is read when Prometheus scrapes; nothing is counted on the hot path."""

    def __init__(self, service: CentralService, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.service = service
        self.clock = clock
        self._last_applied: dict[str, int] = {}
        self._last_moved: dict[str, float] = {}
        self.extra: list[ExtraCollect] = []

    def collect(self) -> Iterator[Metric]:
        service = self.service
        c = service.core.counters()
        for name, value, doc in (
                ("messages", c.messages, "MQTT messages handled by the writer"),
                ("events_applied", c.events_applied, "Events applied (rate: apply rate)"),
                ("events_duplicate", c.events_duplicate, "Duplicate events recognised"),
                ("events_quarantined", c.events_quarantined, "Events quarantined"),
                ("drops", c.drops, "Messages dropped as malformed"),
                ("acks", c.acks, "Event acks published"),
                ("groups", c.groups, "Group transactions committed")):
            yield CounterMetricFamily(f"edge_central_{name}", doc, value=value)
        writer = service.writer
        yield GaugeMetricFamily("edge_central_writer_queue_messages",
                                "Items waiting for the writer", value=writer.inbox.qsize())
        yield GaugeMetricFamily("edge_central_writer_queue_bytes",
                                "Bytes waiting for the writer",
                                value=writer.inbox.queued_bytes())
        yield CounterMetricFamily("edge_central_writer_busy_seconds",
                                  "Writer time applying and committing",
                                  value=writer.busy_seconds)
        yield GaugeMetricFamily("edge_central_mqtt_connected", "1 while connected to the broker",
                                value=1.0 if service.link.connected.is_set() else 0.0)
        compactor = service.compactor
        yield CounterMetricFamily("edge_central_history_pruned_events",
                                  "Applied events pruned past the retention window",
                                  value=compactor.pruned_events)
        yield CounterMetricFamily("edge_central_history_passes", "Compaction passes done",
                                  value=compactor.passes)
        ownership = service.ownership
        if ownership is not None:
            changes = CounterMetricFamily("edge_central_lease_changes", "Partition leases "
                                          "acquired, released or lost", labels=["change"])
            for change, n in sorted(ownership.changes.items()):
                changes.add_metric([change], n)
            yield changes
            yield GaugeMetricFamily("edge_central_leases_held", "Partitions this worker holds",
                                    value=len(ownership.held))
            yield GaugeMetricFamily("edge_central_live_workers", "Workers seen alive",
                                    value=ownership.live_workers)
            yield CounterMetricFamily("edge_central_fenced_transactions", "Apply and order "
                                      "transactions refused because a lease had moved on",
                                      value=ownership.fencing.fenced)
        marks = service.call(_copy_watermarks, timeout=10)
        yield from self._per_store(marks)
        yield from self._from_database()
        for extra in self.extra:
            yield from extra()

    def _per_store(self, marks: _Watermarks) -> Iterator[Metric]:
        with self.service.db.reading() as conn:
            births = {(str(s), str(e)): int(n) for s, e, n in conn.execute(
                "SELECT store, epoch, last_seq FROM stores WHERE state = 'online' AND "
                "epoch IS NOT NULL AND last_seq IS NOT NULL")}
        backlog: dict[str, int] = {}
        applied_sum: dict[str, int] = {}
        for key, applied in marks.applied.items():
            store = key[0]
            known = max(marks.seen.get(key, 0), births.get(key, 0))
            backlog[store] = backlog.get(store, 0) + max(0, known - applied)
            applied_sum[store] = applied_sum.get(store, 0) + applied
        for key, last in births.items():  # an epoch central never received anything of
            if key not in marks.applied:
                backlog[key[0]] = backlog.get(key[0], 0) + last
                applied_sum.setdefault(key[0], 0)
        now = self.clock()
        g_backlog = GaugeMetricFamily("edge_central_store_backlog_events",
                                      "Events a store holds beyond what central applied",
                                      labels=["store"])
        g_lag = GaugeMetricFamily("edge_central_store_lag_seconds",
                                  "Seconds since central last advanced a store with a backlog",
                                  labels=["store"])
        g_quar = GaugeMetricFamily("edge_central_store_quarantined_events",
                                   "Unresolved quarantined events", labels=["store"])
        g_online = GaugeMetricFamily("edge_central_store_online", "1 while the store's birth "
                                     "is the latest status", labels=["store"])
        for store in sorted(applied_sum):
            total = applied_sum[store]
            if self._last_applied.get(store) != total:
                self._last_applied[store] = total
                self._last_moved[store] = now
            lag = now - self._last_moved[store] if backlog[store] > 0 else 0.0
            g_backlog.add_metric([store], backlog[store])
            g_lag.add_metric([store], lag)
        for store, n in sorted(marks.quarantined.items()):
            g_quar.add_metric([store], n)
        for store, online in sorted(marks.online.items()):
            g_online.add_metric([store], 1.0 if online else 0.0)
        yield from (g_backlog, g_lag, g_quar, g_online)

    def _from_database(self) -> Iterator[Metric]:
        with self.service.db.reading() as conn:
            kinds = conn.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind")
            restored = conn.execute("SELECT value FROM meta WHERE key = 'restored_at'")
        alerts = CounterMetricFamily("edge_central_alerts", "Alerts raised, by kind "
                                     "(event_conflict, event_quarantined, ...)", labels=["kind"])
        counts = {str(k): int(n) for k, n in kinds}
        for kind, n in sorted(counts.items()):
            alerts.add_metric([kind], n)
        yield alerts
        yield CounterMetricFamily("edge_central_conflicts", "Events received with a different "
                                  "hash than the kept version", value=counts.get(
                                      "event_conflict", 0))
        yield GaugeMetricFamily("edge_central_restored", "1 while the restore marker is set "
                                "(edge-central db restore-done clears it)",
                                value=1.0 if restored else 0.0)


def metrics_router(service: CentralService, admin: list[Depends]) -> tuple[APIRouter,
                                                                           CentralCollector]:
    """``GET /metrics`` behind the operator token; the collector accepts extra families."""
    registry = CollectorRegistry(auto_describe=False)
    collector = CentralCollector(service)
    registry.register(collector)
    router = APIRouter()

    @router.get("/metrics", dependencies=admin, include_in_schema=False)
    def get_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    _ = get_metrics
    return router, collector

