"""Event ingest: route each inbound message, sequence event batches (PROTOCOL §4.3),
check duplicates, quarantine bad events, and flush the group's rows before its commit."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

import orjson

from central.batches import (
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
from central.customer_history import HISTORY_TYPES, record_history
from central.engine.facts import FactsMixin
from central.engine.state import NOT_DECODED, Group, Inbound, NotDecoded
from central.history_schema import compacted_through
from central.runs import stored_events
from sync.errors import WireFormatError
from sync.messages import store_from_topic
from sync.wire import (
    MAX_BATCH_ITEMS,
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INT,
    STORE_RE,
    canonical_json,
    sha256_hex,
)

log = logging.getLogger("central")

_RUN_COLUMNS = ("store", "epoch", "first_seq", "last_seq", "hashes", "body", "received")

# topics central itself publishes: never input
_OWN_TOPICS = frozenset({"events/ack", "commands"})


class IngestMixin(FactsMixin):
    """Store messages into the open group: the hot path of the engine."""

    def _dispatch(self, group: Group, message: tuple[str, bytes, bool] | Inbound) -> None:
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
            if isinstance(fast, NotDecoded):
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

    def _on_fast_batch(self, group: Group, store: str, batch: FastBatch) -> None:
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

    def _on_events(self, group: Group, store: str, obj: dict[str, Any],
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

    def _sequence(self, group: Group, store: str, epoch: str, first: int, count: int
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
        self._n.events_duplicate += min(skip, count)
        return skip, key

    def _store_run(self, group: Group, key: tuple[str, str], first: int,
                   raws: list[Any]) -> None:
        """Record applied events ``first…`` as one run, in this group's transaction."""
        store, epoch = key
        last = first + len(raws) - 1
        group.runs.append((store, epoch, first, last, digests(raws), run_body(raws), group.ts))
        self._n.events_applied += len(raws)
        self.applied[key] = last
        self._pending_epochs.add(key)
        self._pending_events += len(raws)
        if self._pending_since is None:
            self._pending_since = group.now
        st = self.stores.get(store)
        if st is not None and st.pending_digest is not None:
            group.digests.add(store)  # a deferred digest may be comparable now

    def _quarantine(self, group: Group, store: str, epoch: str, seq: int, reason: str) -> None:
        self._n.events_quarantined += 1
        self._store(store).quarantined += 1
        self.conn.execute(
            "INSERT INTO quarantine (store, epoch, seq, reason) VALUES (?, ?, ?, ?)",
            (store, epoch, seq, reason))
        self._alert(group, store, "event_quarantined", "critical",
                    {"epoch": epoch, "seq": seq, "reason": reason})

    def _check_duplicates(self, group: Group, store: str, epoch: str, first: int,
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

    def _insert_runs(self, group: Group) -> None:
        """The group's runs, in one statement (PostgreSQL: one COPY, not a round trip each)."""
        if group.runs:
            self.conn.insert_rows("event_runs", _RUN_COLUMNS, group.runs)
            group.runs.clear()

    def _flush(self, group: Group) -> None:
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

    def _ensure_store_rows(self, group: Group) -> None:
        new = sorted({s for s, _ in group.epochs})
        if new:
            self.conn.executemany(
                "INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO NOTHING",
                [(s,) for s in new])
            for store in new:
                self._store(store)


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
