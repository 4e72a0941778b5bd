"""What central reads out of applied events: closed reservations and counts, recall
blocks, the stores' own alerts, customer history rows, and the watcher's event types."""

from __future__ import annotations

from typing import Any

from central.customer_history import history_row
from central.engine.base import EngineBase, WriteTx
from central.engine.state import READ_TYPES, Group
from central.recalls import record_blocked
from sync.recalls import RECALL_BLOCKED


class FactsMixin(EngineBase):
    """Facts taken from applied events, inside the group that applies them."""

    def _watched_event(self, group: Group, store: str, kind: str,
                       event: dict[str, Any]) -> None:
        if kind in READ_TYPES or kind == RECALL_BLOCKED:
            self._closing(group, store, kind, event)
        if self.watcher is not None and kind in self.watcher.types:
            # handled now, inside the message's own dispatch: a failure is that message's
            # (skipped as poison, the group applied again without it), not the group's
            self.watcher.on_event(WriteTx(self, group), store, kind, event)

    def _closing(self, group: Group, store: str, kind: str, event: dict[str, Any]) -> None:
        if kind == RECALL_BLOCKED:  # extension, docs/protocol.md "Recalls"
            detail = record_blocked(self.conn, store, event, group.ts)
            if detail is not None:
                self._alert(group, store, "recall_blocked", "warning", detail)
            return
        data = event.get("data")
        if not isinstance(data, dict):
            return
        if kind == "alert":
            self._store_alert(group, store, event, data)
            return
        if kind == "count":
            count_id = data.get("count_id")
            if isinstance(count_id, str):
                group.closed_counts.append((store, count_id))
            return
        reservation_id = data.get("reservation_id")
        if isinstance(reservation_id, str):
            state = "fulfilled" if kind == "fulfilment" else "released"
            group.closed_reservations.append((state, str(event.get("id", "")), store,
                                              reservation_id))

    @staticmethod
    def _customer_fact(group: Group, store: str, event: dict[str, Any]) -> None:
        row = history_row(store, event)  # a sale, return or visit of a known customer
        if row is not None:
            group.history.append(row)

    def _store_alert(self, group: Group, store: str, event: dict[str, Any],
                     data: dict[str, Any]) -> None:
        """A store's own ``alert`` fact (oversold, lost_history, command_quarantined …)
        becomes one of central's alerts, under the store's kind (applied once: resends
        are duplicates and never reach here)."""
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            kind = "store_alert"
        severity = data.get("severity")
        if severity not in ("info", "warning", "critical"):
            severity = "warning"
        detail = {"source": "store", "seq": event.get("seq"), "event_ts": event.get("ts"),
                  **{k: v for k, v in data.items() if k not in ("kind", "severity")}}
        self._alert(group, store, kind, str(severity), detail)
