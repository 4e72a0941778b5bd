"""The state every job of the engine shares, the helpers they all use, and the calls one
job makes into another (declared here, defined by the job's own mixin).

Why mixins over one state rather than collaborating objects: the engine is one writer
with one set of watermarks; every job reads and moves the same ``applied``/``stores``
maps inside the same group transaction, and the hot path (``process`` → ``_on_fast_batch``)
stays plain method calls on ``self``, with no per-event hop between objects.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from central.engine.state import REPEATED_DROP_ALERT, Counters, Group, Publish, StoreState
from central.fencing import Fencing
from central.hooks import Watcher
from central.restore import RestoreWatch
from central.storage import Connection
from sync.wire import canonical_json

log = logging.getLogger("central")

M = TypeVar("M", bound=BaseModel)


class WriteTx:
    """The open group transaction as a :class:`central.hooks.Watcher` sees it."""

    def __init__(self, core: EngineBase, group: Group) -> None:
        self._core = core
        self._group = group
        self.now = group.now

    def issue(self, store: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._core.fencing is not None:
            self._core.fencing.require(store)  # central.fencing: raises Fenced
        return self._core._issue_in_tx(self._group, store, specs)

    def sku_stock(self, sku: str) -> dict[str, tuple[int, int]]:
        return self._core.exact_sku(sku)


class EngineBase:
    """One writer's state (assigned by :class:`central.core.Core`), shared by every job."""

    conn: Connection
    root: str
    resend_after: float
    clock: Callable[[], float]
    owns: Callable[[str], bool]
    watcher: Watcher | None
    _watched: frozenset[str]
    applied: dict[tuple[str, str], int]
    max_seen: dict[tuple[str, str], int]
    stores: dict[str, StoreState]
    _drop_ranges: dict[tuple[Any, ...], int]
    _conflicts: set[tuple[str, str, int, str]]
    _n: Counters
    projection_interval: float
    # stock deltas of applied events not yet in the stock table: store → sku → [on, res]
    _pending: dict[str, dict[str, list[int]]]
    _pending_epochs: set[tuple[str, str]]
    _pending_events: int
    _pending_since: float | None
    restore_watch: RestoreWatch
    fencing: Fencing | None

    # ------------------------------------------------------------------ shared helpers
    def _store(self, store: str) -> StoreState:
        st = self.stores.get(store)
        if st is None:
            st = self.stores[store] = StoreState()
        return st

    def _drop(self, group: Group, store: str, reason: str, range_key: tuple[Any, ...]) -> None:
        self._n.drops += 1
        group.drops[(store, reason)] = group.drops.get((store, reason), 0) + 1
        log.warning("dropped message from store %s: %s", store, reason)
        key = (store, *range_key)
        count = self._drop_ranges.get(key, 0) + 1
        self._drop_ranges[key] = count
        if count == REPEATED_DROP_ALERT:
            self._alert(group, store, "repeated_drop", "warning",
                        {"reason": reason, "range": list(range_key), "times": count})
        if len(self._drop_ranges) > 100_000:
            self._drop_ranges.clear()

    def _parse(self, model: type[M], obj: dict[str, Any], group: Group, store: str,
               range_key: tuple[Any, ...], *, reason: str) -> M | None:
        """``obj`` as ``model``, or None: dropped with ``reason`` (a message of that kind
        that does not validate)."""
        try:
            return model.model_validate(obj)
        except ValidationError:
            self._drop(group, store, reason, range_key)
            return None

    def _alert(self, group: Group, store: str, kind: str, severity: str,
               detail: dict[str, Any]) -> None:
        log.warning("alert %s (%s) for store %s: %s", kind, severity, store, detail)
        group.alerts.append((group.ts, store, kind, severity,
                             canonical_json(detail).decode()))

    def _flush_alerts(self, group: Group) -> None:
        if group.alerts:
            self.conn.executemany(
                "INSERT INTO alerts (ts, store, kind, severity, detail) VALUES (?, ?, ?, ?, ?)",
                group.alerts)
            group.alerts.clear()

    def _watcher_rolled_back(self) -> None:
        if self.watcher is not None:
            self.watcher.rolled_back()

    def _persist_acked(self, store: str, acked: int) -> None:
        self.conn.execute(
            "INSERT INTO stores (store, acked_cseq) VALUES (?, ?) ON CONFLICT (store) "
            "DO UPDATE SET acked_cseq = excluded.acked_cseq", (store, acked))

    # ------------------------------------------------------------------ between jobs
    @abstractmethod
    def load(self) -> None:
        """(Re)load watermarks from the database (central.core)."""

    @abstractmethod
    def run_write(self, fn: Callable[[WriteTx], Any]) -> tuple[Any, list[Publish]]:
        """Run ``fn`` in one write transaction (central.core)."""

    @abstractmethod
    def exact_sku(self, sku: str) -> dict[str, tuple[int, int]]:
        """store → exact (on hand, reserved) of one SKU (central.engine.projection)."""

    @abstractmethod
    def _issue_in_tx(self, group: Group, store: str,
                    specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Issue commands inside the open transaction (central.engine.commands)."""

    @abstractmethod
    def _committed(self, group: Group, now: float) -> list[Publish]:
        """After a commit: the watcher told, the group's sends read (central.engine.commands)."""

    @abstractmethod
    def _on_command_ack(self, group: Group, store: str, obj: dict[str, Any],
                        range_key: tuple[Any, ...], retained: bool) -> None:
        """A store's ``commands/ack`` (central.engine.commands)."""

    @abstractmethod
    def _on_status(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...], retained: bool = False) -> None:
        """A store's birth or death (central.engine.status)."""

    @abstractmethod
    def _on_health(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> bool:
        """A store's health report; True when valid (central.engine.status)."""

    @abstractmethod
    def _on_device(self, group: Group, store: str, device: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        """One device's state (central.engine.status)."""

    @abstractmethod
    def _on_digest(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        """A store's stock digest (central.engine.digests)."""

    @abstractmethod
    def _restored_behind(self, group: Group, store: str, epoch: str, source: str,
                         store_seq: int) -> None:
        """A store ahead of a restored central (central.engine.digests)."""
