"""The protocol engine of the reference central (PROTOCOL v1, central side).

Synchronous and single-threaded by design: one writer owns the database connection and
the in-memory watermarks. The I/O shell (:mod:`central.service`) hands it bursts of
MQTT messages; :meth:`Core.process` applies the whole burst in ONE transaction (group
commit), and only after that commit returns the acks and commands to publish. Nothing is
published for work that was not committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson
from pydantic import ValidationError

from central.batches import (
    CLOSING_TYPES,
    FastBatch,
    add_deltas,
    add_pairs,
    canonical_digest,
    canonical_raws,
    decode_fast,
    digests,
    envelope_raws,
    event_deltas,
    run_body,
    same_event,
)
from central.customer_history import HISTORY_TYPES, HistoryRow, history_row, record_history
from central.customer_registry import COMMAND_TYPES as CUSTOMER_COMMANDS
from central.customer_registry import check_command as check_customer_command
from central.errors import InvalidCommandError, StorageError
from central.fencing import Fenced, Fencing
from central.history_schema import compacted_through
from central.hooks import Watcher
from central.order_commands import ORDER_COMMANDS, plan_order_command
from central.recalls import record_blocked
from central.restore import ALERT_KIND as RESTORED_BEHIND
from central.restore import RestoreWatch
from central.runs import add_events, stock_cells, stored_events, unprojected
from central.storage import Connection
from sync.errors import WireFormatError
from sync.messages import (
    CatalogItem,
    CommandAck,
    DeviceState,
    Digest,
    Health,
    Status,
    store_from_topic,
)
from sync.recalls import RECALL_BLOCKED, RECALL_TYPES, RecallInvalid, check_recall
from sync.wire import (
    MAX_BATCH_ITEMS,
    MAX_ITEM_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INT,
    SKU_RE,
    STORE_RE,
    canonical_json,
    check_deltas,
    digest_lines,
    now_ts,
    sha256_hex,
)

log = logging.getLogger("central")

_READ_TYPES = CLOSING_TYPES | {"alert"}
"""Event types whose ``data`` central reads: closing ones (§5.3) and the store's alerts."""

COMMAND_WINDOW = 2000
"""Commands sent beyond the store's acknowledged watermark before waiting for its ack."""

REPEATED_DROP_ALERT = 3

_RUN_COLUMNS = ("store", "epoch", "first_seq", "last_seq", "hashes", "body", "received")

PROJECTION_INTERVAL = 1.0
"""Seconds the stock projection may lag the event log under load (readers never see it:
they add the unprojected events back, :func:`central.runs.stock_cells`)."""

PROJECTION_MAX_EVENTS = 200_000
"""Flush the projection sooner when this many applied events wait for it."""

# topics central itself publishes: never input
_OWN_TOPICS = frozenset({"events/ack", "commands"})


class _NotDecoded:
    """Marks an inbound message nobody has tried to decode yet."""


NOT_DECODED: Final = _NotDecoded()


class Inbound(NamedTuple):
    """One MQTT message for :meth:`Core.process`; ``decoded`` is what :func:`predecode`
    made of it on the network thread (a plain 3-tuple means not tried)."""

    topic: str
    payload: bytes
    retained: bool
    decoded: FastBatch | _NotDecoded | None = NOT_DECODED


def predecode(topic: str, payload: bytes) -> FastBatch | _NotDecoded | None:
    """Decode an event batch ahead of the writer (pure; any thread). The writer then only
    sequences, stores and acknowledges it, and decoding overlaps its disk writes."""
    if not topic.endswith("/events") or len(payload) > MAX_PAYLOAD_BYTES:
        return NOT_DECODED
    return decode_fast(payload)


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(slots=True)
class StoreState:
    """Per-store command-delivery state. ``acked`` None = the store's watermark is unknown."""

    issued: int = 0
    acked: int | None = None
    sent_through: int = 0
    online: bool = False
    boot_id: str | None = None
    epoch: str | None = None
    last_progress: float = 0.0
    last_goback: float = -1e9
    quarantined: int = 0
    pending_digest: Digest | None = None
    last_resync_cseq: int = 0


@dataclass(slots=True)
class _Group:
    """What one group transaction accumulates before its flush."""

    ts: str
    now: float
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    epochs: set[tuple[str, str]] = field(default_factory=set)
    acks: dict[tuple[str, str], None] = field(default_factory=dict)
    alerts: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    drops: dict[tuple[str, str], int] = field(default_factory=dict)
    closed_reservations: list[tuple[str, str, str, str]] = field(default_factory=list)
    closed_counts: list[tuple[str, str]] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    sends: list[tuple[str, int]] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    contacts: set[str] = field(default_factory=set)


class _Tx:
    """The open group transaction as a :class:`central.hooks.Watcher` sees it."""

    def __init__(self, core: Core, group: _Group) -> None:
        self._core = core
        self._group = group
        self.now = group.now

    def issue(self, store: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._core.fencing is not None:
            self._core.fencing.require(store)  # central.fencing: raises Fenced
        return self._core._issue_in_tx(self._group, store, specs)

    def sku_stock(self, sku: str) -> dict[str, tuple[int, int]]:
        return self._core.exact_sku(sku)


@dataclass(frozen=True, slots=True)
class Counters:
    messages: int
    events_applied: int
    events_duplicate: int
    events_quarantined: int
    drops: int
    acks: int
    groups: int


class Core:
    """Apply store messages and issue commands against one database connection."""

    def __init__(
        self,
        conn: Connection,
        root: str = "retail",
        resend_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        owns: Callable[[str], bool] | None = None,
        *,
        watcher: Watcher | None = None,
    ) -> None:
        self.conn = conn
        self.root = root
        self.resend_after = resend_after
        self.clock = clock
        self.owns = owns or (lambda _store: True)
        self.watcher = watcher
        self._watched = (_READ_TYPES | {RECALL_BLOCKED}
                         | (watcher.types if watcher is not None else frozenset()))
        self.applied: dict[tuple[str, str], int] = {}
        self.max_seen: dict[tuple[str, str], int] = {}
        self.stores: dict[str, StoreState] = {}
        self._drop_ranges: dict[tuple[Any, ...], int] = {}
        self._conflicts: set[tuple[str, str, int, str]] = set()
        self._n = {"messages": 0, "applied": 0, "dup": 0, "quarantined": 0, "drops": 0,
                   "acks": 0, "groups": 0}
        self.projection_interval = PROJECTION_INTERVAL
        # stock deltas of applied events not yet in the stock table: store → sku → [on, res]
        self._pending: dict[str, dict[str, list[int]]] = {}
        self._pending_epochs: set[tuple[str, str]] = set()
        self._pending_events = 0
        self._pending_since: float | None = None
        self.restore_watch = RestoreWatch.load(conn)  # central.restore: restored from a backup
        self.fencing: Fencing | None = None  # central.ownership: leases checked per transaction
        self.load()

    # ------------------------------------------------------------------ state
    def load(self) -> None:
        """(Re)load watermarks from the database: at start and after a failed group."""
        self.applied.clear()
        self.max_seen.clear()
        self._pending.clear()
        self._pending_epochs.clear()
        self._pending_events = 0
        self._pending_since = None
        self._conflicts.clear()  # alerts of a rolled-back group must be raised again
        old = self.stores
        self.stores = {}
        for store, epoch, applied, seen in self.conn.execute(
            "SELECT store, epoch, applied_seq, max_seen_seq FROM epochs"
        ):
            self.applied[(store, epoch)] = int(applied)
            self.max_seen[(store, epoch)] = int(seen)
        for store, state, epoch, boot_id, issued, acked in self.conn.execute(
            "SELECT store, state, epoch, boot_id, issued_cseq, acked_cseq FROM stores"
        ):
            st = StoreState(issued=int(issued), epoch=epoch, boot_id=boot_id,
                            online=state == "online",
                            acked=None if acked is None else int(acked))
            prev = old.get(store)
            if prev is not None:
                st.last_progress = prev.last_progress
                st.last_goback = prev.last_goback
                st.pending_digest = prev.pending_digest
            st.sent_through = st.acked or 0
            self.stores[store] = st
        for store, n in self.conn.execute(
            "SELECT store, COUNT(*) FROM quarantine WHERE resolved = 0 GROUP BY store"
        ):
            self._store(store).quarantined = int(n)
        self._replay_unprojected()

    def _store(self, store: str) -> StoreState:
        st = self.stores.get(store)
        if st is None:
            st = self.stores[store] = StoreState()
        return st

    def counters(self) -> Counters:
        n = self._n
        return Counters(n["messages"], n["applied"], n["dup"], n["quarantined"], n["drops"],
                        n["acks"], n["groups"])

    # ------------------------------------------------------------------ group apply
    def process(self, messages: Iterable[tuple[str, bytes, bool] | Inbound]) -> list[Publish]:
        """Apply a burst of MQTT messages in one transaction; return what to publish.

        A message whose handling raises an unexpected error (a bug, not bad input: bad
        input is dropped) is logged and skipped; the group is rolled back, the state
        reloaded and the rest of the group applied again, so one poison message can never
        hold back the other stores' acks."""
        batch = list(messages)
        poisoned: set[int] = set()
        while True:
            now = self.clock()
            group = _Group(ts=now_ts(), now=now)
            counters = dict(self._n)
            current = -1
            project = False
            self.conn.begin_write()
            try:
                if self.fencing is not None:
                    self.fencing.begin(self.conn)  # central.fencing: raises Fenced
                for current, message in enumerate(batch):
                    if current in poisoned:
                        continue
                    self._n["messages"] += 1
                    self._dispatch(group, message)
                current = -1
                self._flush(group)
                for store in group.digests:
                    self._check_digest(group, store)
                self._flush_alerts(group)
                self._ensure_store_rows(group)
                project = self.projection_due(now)
                if project:
                    self._write_projection()
                if self.fencing is not None:
                    self.fencing.log(self.conn, group.epochs, self.applied)
                if self.watcher is not None:
                    self.watcher.before_commit(_Tx(self, group), group.contacts.union(
                        store for store, _ in group.acks))
                self.conn.commit()
            except StorageError:
                self.conn.rollback()
                log.exception("group transaction failed; nothing acknowledged, reloading state")
                self._watcher_rolled_back()
                self.load()
                return []
            except Exception:
                self.conn.rollback()
                self._watcher_rolled_back()
                self._n = counters
                self.load()
                if current < 0:
                    raise
                log.exception("message on %s could not be handled; skipped",
                              batch[current][0])
                poisoned.add(current)
                self._n["drops"] += 1
                continue
            break
        if project:
            self._projection_committed()
        if self.watcher is not None:
            self.watcher.committed()
        self._n["groups"] += 1
        out: list[Publish] = []
        for store, epoch in group.acks:
            out.append(self._ack(store, epoch, group.ts))
        self._n["acks"] += len(group.acks)
        for store, start in group.sends:
            out.extend(self._send_from(store, start, now))
        return out

    def current_acks(self, ts: str) -> list[Publish]:
        """The ack of every (store, epoch) as it stands, to publish after a reconnect.

        While central was away from the broker, stores may have published batches that
        nobody received (a clean session has no queue). A live ack that does not advance
        makes such a store go back at once (PROTOCOL §4.3) instead of after its
        ``resend_after``.
        """
        return [self._ack(store, epoch, ts) for store, epoch in list(self.applied)
                if self.owns(store)]

    def _watcher_rolled_back(self) -> None:
        if self.watcher is not None:
            self.watcher.rolled_back()

    def exact_sku(self, sku: str) -> dict[str, tuple[int, int]]:
        """store → (on hand, reserved) of one SKU from the writer's own view: the stock
        table (in the current transaction) plus the deltas not yet projected into it."""
        cells = {str(store): (int(on), int(res)) for store, on, res in self.conn.execute(
            "SELECT store, on_hand, reserved FROM stock WHERE sku = ?", (sku,))}
        for store, pending in self._pending.items():
            delta = pending.get(sku)
            if delta is not None:
                on, res = cells.get(store, (0, 0))
                cells[store] = (on + delta[0], res + delta[1])
        return cells

    def run_write(self, fn: Callable[[_Tx], Any]) -> tuple[Any, list[Publish]]:
        """Run ``fn`` in one write transaction (on the writer thread); commands it issues
        are sent after the commit. A failure rolls everything back; with store ownership,
        a lease this worker lost raises :class:`Fenced` (``central.fencing``)."""
        now = self.clock()
        group = _Group(ts=now_ts(), now=now)
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self.fencing.begin(self.conn)  # central.fencing: order writes under the lease
            result = fn(_Tx(self, group))
            self._flush_alerts(group)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self._watcher_rolled_back()
            self.load()
            raise
        if self.watcher is not None:
            self.watcher.committed()
        out: list[Publish] = []
        for target, start in group.sends:
            out.extend(self._send_from(target, start, now))
        return result, out

    def _ack(self, store: str, epoch: str, ts: str) -> Publish:
        body = {"v": 1, "store": store, "epoch": epoch,
                "through_seq": self.applied.get((store, epoch), 0), "ts": ts}
        return Publish(f"{self.root}/v1/stores/{store}/events/ack", canonical_json(body), True)

    def _drop(self, group: _Group, store: str, reason: str, range_key: tuple[Any, ...]) -> None:
        self._n["drops"] += 1
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

    def _alert(self, group: _Group, store: str, kind: str, severity: str,
               detail: dict[str, Any]) -> None:
        log.warning("alert %s (%s) for store %s: %s", kind, severity, store, detail)
        group.alerts.append((group.ts, store, kind, severity,
                             canonical_json(detail).decode()))

    def _dispatch(self, group: _Group, message: tuple[str, bytes, bool] | Inbound) -> None:
        topic, payload, retained = message[0], message[1], message[2]
        split = store_from_topic(self.root, topic)
        if split is None:
            return
        store, rest = split
        if rest in _OWN_TOPICS or not self.owns(store):
            return
        if STORE_RE.fullmatch(store) is None:
            self._drop(group, "?", "bad store id in topic", ("topic",))
            return
        if rest.startswith("devices/") and not payload:
            self.conn.execute("DELETE FROM devices WHERE store = ? AND device = ?",
                              (store, rest.removeprefix("devices/")))
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._drop(group, store, "payload over 1 MiB", (rest, "size", len(payload)))
            return
        if rest == "events":
            fast = message[3] if len(message) > 3 else NOT_DECODED
            if isinstance(fast, _NotDecoded):
                fast = decode_fast(payload)
            if fast is not None and fast.store == store:
                self._on_fast_batch(group, store, fast)
                return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._drop(group, store, "invalid JSON", (rest, "json", sha256_hex(payload)[:16]))
            return
        if not isinstance(obj, dict):
            self._drop(group, store, "not a JSON object", (rest, "json", sha256_hex(payload)[:16]))
            return
        range_key = _range_key(rest, obj)
        version = obj.get("v")
        if type(version) is not int or version != 1:  # JSON true and 1.0 are not 1
            self._drop(group, store, "unsupported v", range_key)
            return
        if obj.get("store") != store:
            self._drop(group, store, "store differs from topic", range_key)
            return
        if rest == "events":
            self._on_events(group, store, obj, range_key, payload)
        elif rest == "status":
            self._on_status(group, store, obj, range_key, retained)
        elif rest == "commands/ack":
            self._on_command_ack(group, store, obj, range_key, retained)
        elif rest == "digest":
            self._on_digest(group, store, obj, range_key)
        elif rest == "health":
            if self._on_health(group, store, obj, range_key) and not retained:
                group.contacts.add(store)  # a live, valid health message: the store is there
        elif rest.startswith("devices/"):
            self._on_device(group, store, rest.removeprefix("devices/"), obj, range_key)

    # ------------------------------------------------------------------ events
    def _on_fast_batch(self, group: _Group, store: str, batch: FastBatch) -> None:
        """A batch :func:`decode_fast` accepted: the hot path, no per-value objects."""
        heads = batch.heads
        skip, key = self._sequence(group, store, batch.epoch, batch.first_seq, len(heads))
        if skip < 0:
            return
        raws = batch.raws
        if skip > 0:
            self._check_duplicates(group, store, batch.epoch, batch.first_seq, raws[:skip])
            if skip >= len(heads):
                return
            heads = heads[skip:]
            raws = raws[skip:]
        add_deltas(self._pending.setdefault(store, {}), heads)
        watched = self._watched
        for index, head in enumerate(heads):
            if head.type in watched:
                try:
                    event = orjson.loads(bytes(raws[index]))
                except orjson.JSONDecodeError:
                    continue  # e.g. 1e400 in data: msgspec skipped it, orjson cannot
                self._watched_event(group, store, head.type, event)
            if head.data is not None and head.data.customer is not None \
                    and head.type in HISTORY_TYPES:
                with contextlib.suppress(orjson.JSONDecodeError):  # as above
                    self._customer_fact(group, store, orjson.loads(bytes(raws[index])))
        if self.watcher is not None:
            self.watcher.on_heads(store, heads)
        self._store_run(group, key, batch.first_seq + skip, raws)

    def _on_events(self, group: _Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...], payload: bytes) -> None:
        """The general path: any batch :func:`decode_fast` did not take (odd values, a
        malformed stock list to quarantine, or one to drop with its reason)."""
        parsed = _event_batch(obj)
        if parsed is None:
            self._drop(group, store, "malformed event batch", range_key)
            return
        epoch, events = parsed
        first = events[0]["seq"]
        skip, key = self._sequence(group, store, epoch, first, len(events))
        if skip < 0:
            return
        received = envelope_raws(payload)
        raws: list[Any] = (received if received is not None and len(received) == len(events)
                           else canonical_raws(events))
        if skip > 0:
            self._check_duplicates(group, store, epoch, first, raws[:skip])
            if skip >= len(events):
                return
        pending = self._pending.setdefault(store, {})
        for index in range(skip, len(events)):
            event = events[index]
            seq = first + index
            kind = event.get("type")
            kind = kind if isinstance(kind, str) else ""
            try:
                moves, holds = event_deltas(event)
            except WireFormatError as exc:
                self._quarantine(group, store, epoch, seq, str(exc))
                continue
            add_pairs(pending, moves, holds)
            if kind in HISTORY_TYPES:
                self._customer_fact(group, store, event)
            if self.watcher is not None:
                self.watcher.on_moves(store, kind, moves, holds)
            if kind in self._watched:
                self._watched_event(group, store, kind, event)
        self._store_run(group, key, first + skip, raws[skip:])

    def _sequence(self, group: _Group, store: str, epoch: str, first: int, count: int
                  ) -> tuple[int, tuple[str, str]]:
        """§4.3 ordering for a well-formed batch: how many leading events are already
        applied (-1: a gap, apply nothing). Every well-formed batch is acknowledged."""
        key = (store, epoch)
        applied = self.applied.get(key)
        if applied is None:
            applied = self.applied[key] = 0
            self.max_seen[key] = 0
        group.epochs.add(key)
        group.acks[key] = None
        last = first + count - 1
        self.max_seen[key] = max(self.max_seen[key], last)
        if first > applied + 1:
            log.info("gap from store %s epoch %s: have %d, batch starts %d",
                     store, epoch, applied, first)
            return -1, key
        skip = applied + 1 - first
        self._n["dup"] += min(skip, count)
        return skip, key

    def _store_run(self, group: _Group, key: tuple[str, str], first: int,
                   raws: list[Any]) -> None:
        """Record applied events ``first…`` as one run, in this group's transaction."""
        store, epoch = key
        last = first + len(raws) - 1
        group.runs.append((store, epoch, first, last, digests(raws), run_body(raws), group.ts))
        self._n["applied"] += len(raws)
        self.applied[key] = last
        self._pending_epochs.add(key)
        self._pending_events += len(raws)
        if self._pending_since is None:
            self._pending_since = group.now
        st = self.stores.get(store)
        if st is not None and st.pending_digest is not None:
            group.digests.add(store)  # a deferred digest may be comparable now

    def _quarantine(self, group: _Group, store: str, epoch: str, seq: int, reason: str) -> None:
        self._n["quarantined"] += 1
        self._store(store).quarantined += 1
        self.conn.execute(
            "INSERT INTO quarantine (store, epoch, seq, reason) VALUES (?, ?, ?, ?)",
            (store, epoch, seq, reason))
        self._alert(group, store, "event_quarantined", "critical",
                    {"epoch": epoch, "seq": seq, "reason": reason})

    def _watched_event(self, group: _Group, store: str, kind: str,
                       event: dict[str, Any]) -> None:
        if kind in _READ_TYPES or kind == RECALL_BLOCKED:
            self._closing(group, store, kind, event)
        if self.watcher is not None and kind in self.watcher.types:
            # handled now, inside the message's own dispatch: a failure is that message's
            # (skipped as poison, the group applied again without it), not the group's
            self.watcher.on_event(_Tx(self, group), store, kind, event)

    def _closing(self, group: _Group, store: str, kind: str, event: dict[str, Any]) -> None:
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
    def _customer_fact(group: _Group, store: str, event: dict[str, Any]) -> None:
        row = history_row(store, event)  # a sale, return or visit of a known customer
        if row is not None:
            group.history.append(row)

    def _store_alert(self, group: _Group, store: str, event: dict[str, Any],
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

    def _check_duplicates(self, group: _Group, store: str, epoch: str, first: int,
                          raws: list[Any]) -> None:
        """Events at or below the watermark: the same canonical form as the kept version,
        or a conflict (alert once, keep the first). Their SHA-256 over the bytes as received
        settles the usual case; only a difference costs a canonical comparison."""
        self._insert_runs(group)  # the kept versions may be from this very group
        kept = stored_events(self.conn, store, epoch, first, first + len(raws) - 1)
        floor = compacted_through(self.conn, store, epoch)  # after kept: central.history
        sha256 = hashlib.sha256
        for index, raw in enumerate(raws):
            seq = first + index
            if seq <= floor:
                continue  # pruned: a duplicate by its seq, its hash no longer comparable
            entry = kept.get(seq)
            if entry is not None and (entry[0] == sha256(raw).digest()
                                      or same_event(entry[1], raw)):
                continue
            digest = canonical_digest(raw)
            conflict = (store, epoch, seq, digest)
            if conflict in self._conflicts:
                continue  # the same conflicting version resent: alerted once already
            if len(self._conflicts) > 100_000:
                self._conflicts.clear()
            self._conflicts.add(conflict)
            self._alert(group, store, "event_conflict", "critical",
                        {"epoch": epoch, "seq": seq,
                         "kept_sha256": None if entry is None else canonical_digest(entry[1]),
                         "received_sha256": digest})

    # ------------------------------------------------------------------ stock projection
    def projection_due(self, now: float) -> bool:
        """Write the stock projection with this group: ``projection_interval`` after the
        oldest pending event, or sooner when many wait. (An idle writer calls
        :meth:`flush_projection` itself.)"""
        if self._pending_since is None:
            return False
        return (now - self._pending_since >= self.projection_interval
                or self._pending_events >= PROJECTION_MAX_EVENTS)

    def _write_projection(self) -> None:
        """Add the pending deltas to the stock table and move ``projected_seq`` up, in the
        current transaction; the in-memory state is cleared only after its commit."""
        if self._pending:
            self.conn.add_stock([(store, sku, c[0], c[1])
                                 for store, cells in self._pending.items()
                                 for sku, c in cells.items() if c[0] or c[1]])
        if self._pending_epochs:
            self.conn.executemany(
                "UPDATE epochs SET projected_seq = ? WHERE store = ? AND epoch = ?",
                [(self.applied[key], key[0], key[1]) for key in self._pending_epochs])

    def _projection_committed(self) -> None:
        if self.watcher is not None:
            self.watcher.on_projected(self._pending)
        self._pending.clear()
        self._pending_epochs.clear()
        self._pending_events = 0
        self._pending_since = None

    def flush_projection(self) -> None:
        """Write the pending stock projection in its own transaction (idle, stop, tests)."""
        if self._pending_since is None:
            return
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self.fencing.begin(self.conn)
            self._write_projection()
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self.load()
            raise
        self._projection_committed()

    def _replay_unprojected(self) -> None:
        """After a restart or a failed group: the events applied after the stock table's
        checkpoint become pending deltas again (read back from the runs)."""
        for store, epoch, projected, applied in unprojected(self.conn):
            if not self.owns(store):
                continue  # another worker's store (central.ownership) projects its own
            add_events(self._pending.setdefault(store, {}), self.conn, store, epoch,
                       (projected, applied))
            key = (store, epoch)
            self._pending_epochs.add(key)
            self._pending_events += applied - projected
            if self._pending_since is None:
                self._pending_since = self.clock()

    # ------------------------------------------------------------------ status & commands
    def _on_status(self, group: _Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...], retained: bool = False) -> None:
        now = group.now
        try:
            status = Status.model_validate(obj)
        except ValidationError:
            self._drop(group, store, "malformed status", range_key)
            return
        st = self._store(store)
        if status.state == "offline":
            if st.boot_id is not None and status.boot_id != st.boot_id:
                log.info("stale death of store %s (boot %s, current %s) ignored",
                         store, status.boot_id, st.boot_id)
                return
            st.online = False
            self._upsert_store(store, "offline", status)
            return
        st.online = True
        st.boot_id = status.boot_id
        st.epoch = status.epoch
        applied = self.applied.get((store, status.epoch), 0)
        # A retained birth replayed when central (re)subscribes is old news: its last_seq
        # predates everything applied since, so only a live birth can prove a rollback.
        if not retained and status.last_seq is not None and status.last_seq < applied:
            self._alert(group, store, "history_rolled_back", "critical",
                        {"epoch": status.epoch, "birth_last_seq": status.last_seq,
                         "central_applied": applied})
        # PROTOCOL §4.3: a birth beyond what central applied (central restored from a
        # backup while the store was away, or a backlog): ack that epoch again, live, so an
        # idle store goes back now rather than at its next fact. A retained birth counts
        # too: replayed when central (re)subscribes, it says the store is online with
        # events central may never have heard while it was away from the broker (a clean
        # session queues nothing). An ack never moves backwards, so this is always safe.
        if status.last_seq is not None and status.last_seq > applied:
            group.acks[(store, status.epoch)] = None
            self._restored_behind(group, store, status.epoch, "birth", status.last_seq)
        self._upsert_store(store, "online", status)
        if status.applied_cseq is None:
            st.acked = None  # wait for its commands/ack (first resync pending)
            st.sent_through = 0
            return
        st.acked = status.applied_cseq
        st.sent_through = status.applied_cseq
        st.last_progress = now
        self._persist_acked(store, st.acked)
        if st.issued > st.acked:
            group.sends.append((store, st.acked + 1))

    def _upsert_store(self, store: str, state: str, status: Status) -> None:
        self.conn.execute(
            "INSERT INTO stores (store, state, epoch, boot_id, agent, last_seq, "
            "birth_applied_cseq, state_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (store) DO UPDATE SET state = excluded.state, epoch = excluded.epoch, "
            "boot_id = excluded.boot_id, agent = COALESCE(excluded.agent, stores.agent), "
            "last_seq = COALESCE(excluded.last_seq, stores.last_seq), "
            "birth_applied_cseq = excluded.birth_applied_cseq, state_ts = excluded.state_ts",
            (store, state, status.epoch, status.boot_id, status.agent, status.last_seq,
             status.applied_cseq, status.ts or now_ts()),
        )

    def _persist_acked(self, store: str, acked: int) -> None:
        self.conn.execute(
            "INSERT INTO stores (store, acked_cseq) VALUES (?, ?) ON CONFLICT (store) "
            "DO UPDATE SET acked_cseq = excluded.acked_cseq", (store, acked))

    def _on_command_ack(self, group: _Group, store: str, obj: dict[str, Any],
                        range_key: tuple[Any, ...], retained: bool) -> None:
        now = group.now
        try:
            ack = CommandAck.model_validate(obj)
        except ValidationError:
            self._drop(group, store, "malformed commands/ack", range_key)
            return
        st = self._store(store)
        through = ack.through_cseq
        prev = st.acked
        st.acked = through
        self._persist_acked(store, through)
        if through > st.issued:
            self._alert(group, store, "command_ack_beyond_issued", "critical",
                        {"through_cseq": through, "issued": st.issued})
            return
        if prev is None or through > prev:
            st.last_progress = now
            st.sent_through = max(st.sent_through, through)
            if st.sent_through < st.issued and st.sent_through - through < COMMAND_WINDOW // 2:
                group.sends.append((store, st.sent_through + 1))
            elif prev is None and through < st.issued:
                group.sends.append((store, through + 1))
            return
        if through < prev:
            log.warning("store %s reports commands through %d, below %d: resending",
                        store, through, prev)
            st.last_goback = now
            group.sends.append((store, through + 1))
            return
        # through == prev: no progress
        if (not retained and st.sent_through > through
                and now - st.last_goback >= 1.0):
            st.last_goback = now
            group.sends.append((store, through + 1))

    def _send_from(self, store: str, start: int, now: float) -> list[Publish]:
        """Command batches from ``start`` within the window; read back from the database."""
        st = self._store(store)
        if st.acked is None or start > st.issued:
            return []
        upto = min(st.issued, max(st.acked, start - 1) + COMMAND_WINDOW)
        rows = self.conn.execute(
            "SELECT cseq, body FROM commands WHERE store = ? AND cseq >= ? AND cseq <= ? "
            "ORDER BY cseq", (store, start, upto))
        if st.sent_through <= st.acked:
            st.last_progress = now
        out: list[Publish] = []
        topic = f"{self.root}/v1/stores/{store}/commands"
        head = b'{"commands":['
        tail = b'],"store":' + orjson.dumps(store) + b',"v":1}'
        chunk: list[bytes] = []
        size = len(head) + len(tail)
        for cseq, body in rows:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            if chunk and (len(chunk) >= MAX_BATCH_ITEMS
                          or size + len(raw) + 1 > MAX_PAYLOAD_BYTES):
                out.append(Publish(topic, head + b",".join(chunk) + tail))
                chunk = []
                size = len(head) + len(tail)
            chunk.append(raw)
            size += len(raw) + 1
            st.sent_through = max(st.sent_through, int(cseq))
        if chunk:
            out.append(Publish(topic, head + b",".join(chunk) + tail))
        return out

    def tick(self) -> list[Publish]:
        """Timer: resend to stores whose watermark has not moved for ``resend_after``."""
        now = self.clock()
        out: list[Publish] = []
        if self.watcher is not None:
            try:
                out.extend(self.watcher.tick(self.run_write))
            except Fenced:  # central.fencing: rolled back; the next tick runs without it
                log.warning("order timers: a lease was lost; nothing of that tick committed")
        due = [store for store, st in self.stores.items()
               if st.online and st.acked is not None and st.acked < st.issued
               and self.owns(store)  # central.ownership: not another worker's store
               and now - st.last_progress >= self.resend_after]
        if not due:
            return out
        try:
            for store in due:
                st = self.stores[store]
                acked = st.acked or 0
                st.last_progress = now
                log.info("store %s: no command progress for %.0fs, resending from %d",
                         store, self.resend_after, acked + 1)
                out.extend(self._send_from(store, acked + 1, now))
        except StorageError:
            log.exception("resend read failed")
        return out

    # ------------------------------------------------------------------ digest, health
    def _on_digest(self, group: _Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        try:
            digest = Digest.model_validate(obj)
        except ValidationError:
            self._drop(group, store, "malformed digest", range_key)
            return
        self._store(store).pending_digest = digest
        group.digests.add(store)
        self._restored_behind(group, store, digest.epoch, "digest", digest.through_seq)
        self.conn.execute(
            "INSERT INTO stores (store, last_digest) VALUES (?, ?) ON CONFLICT (store) "
            "DO UPDATE SET last_digest = excluded.last_digest",
            (store, canonical_json(obj).decode()))

    def _restored_behind(self, group: _Group, store: str, epoch: str, source: str,
                         store_seq: int) -> None:
        """central.restore: after a restore, a store ahead of central raises the alert and
        gets its epoch's (lower) ack again, live (PROTOCOL §4.3)."""
        detail = self.restore_watch.behind(store, epoch, source, store_seq,
                                           self.applied.get((store, epoch), 0))
        if detail is not None:
            self._alert(group, store, RESTORED_BEHIND, "critical", detail)
            group.acks[(store, epoch)] = None

    def digest_ready(self, store: str, digest: Digest) -> bool:
        if self.applied.get((store, digest.epoch), 0) < digest.through_seq:
            return False
        return all(
            self.applied.get(key, 0) >= seen
            for key, seen in self.max_seen.items()
            if key[0] == store and key[1] != digest.epoch
        )

    def central_digest(self, store: str, digest: Digest) -> tuple[int, str]:
        """Central's digest at the digest's (epoch, through_seq, through_cseq) point: the
        exact stock, minus the events of that epoch after ``through_seq`` and the commands
        after ``through_cseq``."""
        cells = stock_cells(self.conn, store)
        add_events(cells, self.conn, store, digest.epoch,
                   (digest.through_seq, self.applied.get((store, digest.epoch), 0)), sign=-1)
        for (body,) in self.conn.execute(
                "SELECT body FROM commands WHERE store = ? AND cseq > ?",
                (store, digest.through_cseq)):
            item = orjson.loads(body)
            for column, name in ((0, "stock"), (1, "reserve")):
                try:
                    pairs = check_deltas(item.get(name, []), name)
                except WireFormatError:
                    continue
                for sku, delta in pairs:
                    cells.setdefault(sku, [0, 0])[column] -= delta
        return digest_lines((sku, c[0], c[1]) for sku, c in cells.items())

    def _check_digest(self, group: _Group, store: str) -> None:
        st = self._store(store)
        digest = st.pending_digest
        if digest is None or not self.digest_ready(store, digest):
            return
        st.pending_digest = None
        if digest.through_seq < compacted_through(self.conn, store, digest.epoch):
            log.warning("digest of store %s older than the retained history: not compared",
                        store)  # central.history
            return
        if digest.through_cseq > st.issued:
            self._alert(group, store, "digest_beyond_issued", "warning",
                        {"through_cseq": digest.through_cseq, "issued": st.issued})
            return
        skus, sha = self.central_digest(store, digest)
        match = skus == digest.skus and sha == digest.sha256
        result = {"epoch": digest.epoch, "through_seq": digest.through_seq,
                  "through_cseq": digest.through_cseq, "match": match, "ts": group.ts,
                  "central_skus": skus, "store_skus": digest.skus}
        self.conn.execute("UPDATE stores SET digest_result = ? WHERE store = ?",
                          (canonical_json(result).decode(), store))
        if match:
            return
        self._alert(group, store, "stock_mismatch", "critical", result)
        if st.quarantined:
            log.warning("store %s has quarantined events: no automatic resync", store)
            return
        if st.last_resync_cseq > digest.through_cseq:
            return  # a resync is already on its way
        self._issue_in_tx(group, store, [{"type": "resync"}])

    def _on_health(self, group: _Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> bool:
        try:
            Health.model_validate(obj)
        except ValidationError:
            self._drop(group, store, "malformed health", range_key)
            return False
        self.conn.execute(
            "INSERT INTO stores (store, health, health_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (store) DO UPDATE SET health = excluded.health, "
            "health_ts = excluded.health_ts",
            (store, canonical_json(obj).decode(), group.ts))
        return True

    def _on_device(self, group: _Group, store: str, device: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        try:
            state = DeviceState.model_validate(obj)
        except ValidationError:
            self._drop(group, store, "malformed device state", range_key)
            return
        if state.device != device:
            self._drop(group, store, "device differs from topic", range_key)
            return
        self.conn.execute(
            "INSERT INTO devices (store, device, body) VALUES (?, ?, ?) ON CONFLICT "
            "(store, device) DO UPDATE SET body = excluded.body",
            (store, device, canonical_json(obj).decode()))

    # ------------------------------------------------------------------ flush
    def _insert_runs(self, group: _Group) -> None:
        """The group's runs, in one statement (PostgreSQL: one COPY, not a round trip each)."""
        if group.runs:
            self.conn.insert_rows("event_runs", _RUN_COLUMNS, group.runs)
            group.runs.clear()

    def _flush(self, group: _Group) -> None:
        conn = self.conn
        self._insert_runs(group)
        if group.epochs:
            conn.executemany(
                "INSERT INTO epochs (store, epoch, applied_seq, max_seen_seq, first_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (store, epoch) DO UPDATE SET "
                "applied_seq = excluded.applied_seq, max_seen_seq = excluded.max_seen_seq",
                [(s, e, self.applied[(s, e)], self.max_seen[(s, e)], group.ts)
                 for s, e in group.epochs])
        if group.closed_reservations:
            conn.executemany(
                "UPDATE reservations SET state = ?, closed_by = ? WHERE store = ? AND "
                "reservation_id = ? AND state = 'open'", group.closed_reservations)
        if group.closed_counts:
            conn.executemany(
                "UPDATE count_requests SET state = 'done' WHERE store = ? AND count_id = ? "
                "AND state = 'open'", group.closed_counts)
        if group.history:
            record_history(conn, group.history)
            group.history.clear()
        if group.drops:
            conn.executemany(
                "INSERT INTO drops (store, reason, count) VALUES (?, ?, ?) ON CONFLICT "
                "(store, reason) DO UPDATE SET count = drops.count + excluded.count",
                [(s, r, n) for (s, r), n in group.drops.items()])
        self._flush_alerts(group)

    def _flush_alerts(self, group: _Group) -> None:
        if group.alerts:
            self.conn.executemany(
                "INSERT INTO alerts (ts, store, kind, severity, detail) VALUES (?, ?, ?, ?, ?)",
                group.alerts)
            group.alerts.clear()

    def _ensure_store_rows(self, group: _Group) -> None:
        new = sorted({s for s, _ in group.epochs})
        if new:
            self.conn.executemany(
                "INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO NOTHING",
                [(s,) for s in new])
            for store in new:
                self._store(store)

    # ------------------------------------------------------------------ commands
    def issue(self, store: str, specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                     list[Publish]]:
        """Issue operator commands to a store: validated, given gapless cseqs, committed
        with their effect on central's state, then (if the store is reachable) sent."""
        if STORE_RE.fullmatch(store) is None:
            raise InvalidCommandError(f"{store!r} is not a valid store id")
        if not self.owns(store):
            raise InvalidCommandError(f"store {store} belongs to another central partition")
        if not specs:
            raise InvalidCommandError("no command given")
        now = self.clock()
        group = _Group(ts=now_ts(), now=now)
        st = self._store(store)
        before = st.issued, st.last_resync_cseq
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self._fence_issue(self.fencing, store)  # central.fencing: still the owner?
            issued = self._issue_in_tx(group, store, specs)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self._watcher_rolled_back()
            st.issued, st.last_resync_cseq = before
            raise
        if self.watcher is not None:
            self.watcher.committed()
        out: list[Publish] = []
        for target, start in group.sends:
            out.extend(self._send_from(target, start, now))
        return issued, out

    def _fence_issue(self, fencing: Fencing, store: str) -> None:
        """central.ownership: an operator command commits only under this worker's lease."""
        try:
            fencing.begin(self.conn)
        except Fenced:
            self.conn.rollback()
            self.load()  # forget the lost partitions' pending stock deltas
            raise InvalidCommandError(f"store {store} moved to another worker; retry there"
                                      ) from None
        if not self.owns(store):
            raise InvalidCommandError(f"store {store} belongs to another central worker")

    def _issue_in_tx(self, group: _Group, store: str,
                     specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        st = self._store(store)
        conn = self.conn
        conn.execute("INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO NOTHING",
                      (store,))
        commands: list[dict[str, Any]] = []
        for spec in specs:
            command = self._plan(store, spec, group.ts)
            command["cseq"] = st.issued + 1
            body = canonical_json(command)
            if len(body) > MAX_ITEM_BYTES:
                raise InvalidCommandError(
                    f"command {command['type']} is {len(body)} bytes, over the 64 KiB limit")
            st.issued += 1
            if command["type"] == "resync":
                st.last_resync_cseq = st.issued
            self._apply_command(store, command)
            conn.execute(
                "INSERT INTO commands (store, cseq, id, type, body, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (store, command["cseq"], command["id"], command["type"], body.decode(),
                 group.ts))
            commands.append(command)
        conn.execute("UPDATE stores SET issued_cseq = ? WHERE store = ?", (st.issued, store))
        self._flush_alerts(group)
        if st.online and st.acked is not None and st.sent_through - st.acked < COMMAND_WINDOW:
            group.sends.append((store, max(st.sent_through, st.acked) + 1))
        return [{"cseq": c["cseq"], "id": c["id"], "type": c["type"]} for c in commands]

    def _plan(self, store: str, spec: dict[str, Any], ts: str) -> dict[str, Any]:
        kind = spec.get("type")
        data = dict(spec.get("data") or {})
        stock: list[dict[str, Any]] = []
        reserve: list[dict[str, Any]] = []
        if kind == "stock.adjust":
            try:
                pairs = check_deltas(spec.get("stock"), "stock")
            except WireFormatError as exc:
                raise InvalidCommandError(str(exc)) from exc
            if not pairs or not isinstance(data.get("reason"), str):
                raise InvalidCommandError("stock.adjust needs a reason and at least one line")
            stock = [{"sku": s, "delta": d} for s, d in pairs]
        elif kind == "catalog.upsert":
            items = data.get("items")
            if not isinstance(items, list) or not items:
                raise InvalidCommandError("catalog.upsert needs items")
            try:
                data["items"] = [CatalogItem.model_validate(i).model_dump(mode="json")
                                 for i in items]
            except ValidationError as exc:
                raise InvalidCommandError(f"invalid catalog item: {exc}") from exc
        elif kind == "catalog.remove":
            skus = data.get("skus")
            if not isinstance(skus, list) or not skus or not all(
                    isinstance(s, str) and SKU_RE.fullmatch(s) for s in skus):
                raise InvalidCommandError("catalog.remove needs a list of valid SKUs")
        elif kind == "reservation.create":
            rid, ref = data.get("reservation_id"), data.get("order_ref")
            lines = data.get("lines")
            if not isinstance(rid, str) or not rid or not isinstance(ref, str):
                raise InvalidCommandError("reservation.create needs reservation_id and order_ref")
            if not isinstance(lines, list) or not lines:
                raise InvalidCommandError("reservation.create needs lines")
            for line in lines:
                if (not isinstance(line, dict) or not isinstance(line.get("sku"), str)
                        or SKU_RE.fullmatch(line["sku"]) is None
                        or type(line.get("qty")) is not int or line["qty"] <= 0):
                    raise InvalidCommandError(f"invalid reservation line {line!r}")
            if self.conn.execute(
                    "SELECT 1 FROM reservations WHERE store = ? AND reservation_id = ?",
                    (store, rid)):
                raise InvalidCommandError(f"reservation {rid} already exists for {store}")
            data["lines"] = [{"sku": ln["sku"], "qty": ln["qty"]} for ln in lines]
            data.setdefault("expires_at", None)
            reserve = [{"sku": ln["sku"], "delta": ln["qty"]} for ln in lines]
        elif kind == "reservation.cancel":
            rid = data.get("reservation_id")
            rows = self.conn.execute(
                "SELECT state, cancel_requested FROM reservations WHERE store = ? AND "
                "reservation_id = ?", (store, rid))
            if not rows:
                raise InvalidCommandError(f"no reservation {rid!r} for {store}")
            if rows[0][0] != "open":
                raise InvalidCommandError(f"reservation {rid} is already {rows[0][0]}")
            data = {"reservation_id": rid}
        elif kind == "count.request":
            cid, skus = data.get("count_id"), data.get("skus")
            if not isinstance(cid, str) or not cid:
                raise InvalidCommandError("count.request needs count_id")
            if not isinstance(skus, list) or not skus or not all(
                    isinstance(s, str) and SKU_RE.fullmatch(s) for s in skus):
                raise InvalidCommandError("count.request needs a list of valid SKUs")
            if self.conn.execute(
                    "SELECT 1 FROM count_requests WHERE store = ? AND count_id = ?",
                    (store, cid)):
                raise InvalidCommandError(f"count request {cid} already exists for {store}")
        elif kind == "resync":
            data = {}
        elif kind in RECALL_TYPES:  # extension, docs/protocol.md "Recalls"
            try:
                data = check_recall(kind, data)
            except RecallInvalid as exc:
                raise InvalidCommandError(f"{kind}: {exc}") from exc
        elif kind in CUSTOMER_COMMANDS:  # docs/protocol.md §5.1 extension
            data = check_customer_command(kind, data)
        elif kind in ORDER_COMMANDS:
            data, reserve = plan_order_command(self.conn, store, kind, data)
        else:
            raise InvalidCommandError(f"unknown command type {kind!r}")
        return {"cseq": 0, "id": str(uuid.uuid4()), "type": kind, "ts": ts, "data": data,
                "stock": stock, "reserve": reserve}

    def _apply_command(self, store: str, command: dict[str, Any]) -> None:
        conn = self.conn
        kind = command["type"]
        data = command["data"]
        cells: dict[str, list[int]] = {}
        for name, column in (("stock", 0), ("reserve", 1)):
            for line in command[name]:
                cells.setdefault(line["sku"], [0, 0])[column] += line["delta"]
        if cells:
            conn.add_stock([(store, sku, c[0], c[1]) for sku, c in cells.items()])
        if self.watcher is not None:
            self.watcher.on_command(store, command)
        if kind == "catalog.upsert":
            conn.executemany(
                "INSERT INTO catalog (store, sku, item) VALUES (?, ?, ?) ON CONFLICT "
                "(store, sku) DO UPDATE SET item = excluded.item",
                [(store, i["sku"], canonical_json(i).decode()) for i in data["items"]])
        elif kind == "catalog.remove":
            conn.executemany("DELETE FROM catalog WHERE store = ? AND sku = ?",
                             [(store, s) for s in data["skus"]])
        elif kind in ("reservation.create", "order.assign"):
            conn.execute(
                "INSERT INTO reservations (store, reservation_id, order_ref, lines, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (store, data["reservation_id"], data.get("order_ref", data.get("order_id")),
                 canonical_json([{"sku": ln["sku"], "qty": ln["qty"]}
                                 for ln in data["lines"]]).decode(),
                 data.get("expires_at")))
        elif kind == "reservation.cancel":
            conn.execute("UPDATE reservations SET cancel_requested = 1 WHERE store = ? AND "
                         "reservation_id = ?", (store, data["reservation_id"]))
        elif kind == "count.request":
            conn.execute("INSERT INTO count_requests (store, count_id, skus) VALUES (?, ?, ?)",
                         (store, data["count_id"], canonical_json(data["skus"]).decode()))

    def checkpoint(self) -> None:
        """Passive WAL checkpoint (SQLite only); never blocks on readers."""
        if self.conn.dialect == "sqlite":
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except StorageError:
                log.warning("WAL checkpoint failed", exc_info=True)

    def resolve_quarantine(self, store: str, epoch: str, seq: int) -> bool:
        """An operator has dealt with a quarantined event: automatic resync is allowed again
        once none is left."""
        self.conn.begin_write()
        try:
            rows = self.conn.execute(
                "SELECT resolved FROM quarantine WHERE store = ? AND epoch = ? AND seq = ?",
                (store, epoch, seq))
            if not rows or rows[0][0]:
                self.conn.rollback()
                return False
            self.conn.execute("UPDATE quarantine SET resolved = 1 WHERE store = ? AND "
                              "epoch = ? AND seq = ?", (store, epoch, seq))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        st = self._store(store)
        st.quarantined = max(0, st.quarantined - 1)
        return True


def _event_batch(obj: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """The §4.3 well-formedness test of an event batch (``v`` and ``store`` are checked by
    the caller), equivalent to ``sync.messages.EventBatch`` but without copying events:
    ``epoch`` a string of 1 to 64 characters, 1 to 1000 events, each an object whose ``seq`` is a
    positive safe integer, contiguous and increasing. Returns (epoch, events) or None."""
    epoch = obj.get("epoch")
    events = obj.get("events")
    if type(epoch) is not str or not 1 <= len(epoch) <= 64:
        return None
    if type(events) is not list or not 1 <= len(events) <= MAX_BATCH_ITEMS:
        return None
    expected = None
    for item in events:
        if type(item) is not dict:
            return None
        seq = item.get("seq")
        if type(seq) is not int or not 1 <= seq <= MAX_SAFE_INT:
            return None
        if expected is not None and seq != expected:
            return None
        expected = seq + 1
    return epoch, events


def _range_key(rest: str, obj: dict[str, Any]) -> tuple[Any, ...]:
    """Identify a dropped message well enough to notice the same range dropped again."""
    items = obj.get("events")
    if isinstance(items, list) and items:
        first = items[0].get("seq") if isinstance(items[0], dict) else None
        last = items[-1].get("seq") if isinstance(items[-1], dict) else None
        return (rest, str(obj.get("epoch")), str(first), str(last))
    return (rest, sha256_hex(canonical_json(obj))[:16])
