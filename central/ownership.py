"""Store ownership on PostgreSQL: central workers share the chain's stores through
leases with heartbeats and fencing tokens, and each subscribes to its own stores only.

The stores are hashed into ``[ownership] partitions`` (:func:`central.config.store_partition`).
Table ``partition_leases`` holds one row per partition: the worker holding it, its fencing
token (+1 at every acquisition) and the expiry, in the database's clock (no worker's clock is
trusted). Every ``lease_ttl_s / 3`` a worker's manager thread, on its own connection:

1. marks itself alive (``central_workers``) and renews its leases; a lease it could not
   renew was taken over: it unsubscribes those stores;
2. computes its fair share, ``ceil(partitions / live workers)``;
3. above it (a worker joined), it hands partitions back: unsubscribes, lets the writer
   flush the stock projection and forget them, then frees the lease;
4. below it (a worker left, or died and its leases expired), it takes a free or expired
   lease (token + 1, ``FOR UPDATE SKIP LOCKED``), has the writer reload its state and
   publish the partition's acks live (a store waiting for an ack goes back at once,
   PROTOCOL §4.3), then subscribes to that partition's stores.

A SIGKILLed worker's partitions are therefore taken over within ``lease_ttl_s`` plus one
heartbeat. Correctness does not rest on that timing: :class:`central.fencing.Fencing`
checks the lease inside every apply transaction.

The stores a partition holds are the store tokens' names (``http.store_tokens_dir``) and
the stores the database knows, re-read at every heartbeat (a new store's token file is
picked up within one heartbeat).
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from central.config import CentralConfig
from central.core import Core, Publish
from central.errors import StorageError
from central.fencing import Fencing
from central.ownership_schema import OWNERSHIP_TABLES
from central.storage import Connection, Database
from sync.messages import store_from_topic
from sync.wire import STORE_RE, now_ts

log = logging.getLogger("central.ownership")

TOPICS = ("status", "events", "commands/ack", "digest", "health", "devices/+")
"""Per store, the same filters as the wildcard subscription of :mod:`central.service`."""

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_LOCK = 0x65646765  # advisory lock around the one-time table creation


class Ownership:
    """The lease manager of one worker process."""

    def __init__(self, db: Database, config: CentralConfig) -> None:
        settings = config.ownership
        self.db = db
        self.config = config
        self.ttl = settings.lease_ttl_s
        self.partitions = settings.partitions
        self.worker = f"{settings.worker_name}-{uuid.uuid4().hex[:8]}"
        self.fencing = Fencing(self.worker, self.partitions)
        self.held: dict[int, int] = {}  # the manager's view; the writer's is fencing.held
        self.subscribed: dict[int, list[str]] = {}
        self.changes = {"acquired": 0, "released": 0, "lost": 0}
        self.live_workers = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central.ownership",
                                        daemon=True)
        self._call: Callable[[Callable[[Core], tuple[Any, list[Publish]]]], Any] | None = None
        self._subscribe: Callable[[list[str]], None] | None = None
        self._unsubscribe: Callable[[list[str]], None] | None = None
        self._conn: Connection | None = None

    # ------------------------------------------------------------------ wiring
    def attach(self, call: Callable[[Callable[[Core], tuple[Any, list[Publish]]]], Any],
               subscribe: Callable[[list[str]], None],
               unsubscribe: Callable[[list[str]], None]) -> None:
        """``call`` runs a job on the writer thread and waits; the others change the MQTT
        subscriptions."""
        self._call = call
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe

    def filters(self) -> list[str]:
        """Topic filters of every held store (the link subscribes them again on reconnect)."""
        with self._lock:
            return [f for topics in self.subscribed.values() for f in topics]

    def start(self) -> None:
        conn = self.db.connect()
        try:
            conn.begin_write()
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK,))
            for statement in OWNERSHIP_TABLES:
                conn.execute(statement)
            conn.executemany("INSERT INTO partition_leases (part) VALUES (?) "
                             "ON CONFLICT (part) DO NOTHING",
                             [(p,) for p in range(self.partitions)])
            conn.commit()
        except BaseException:
            conn.rollback()
            conn.close()
            raise
        self._conn = conn
        self._thread.start()

    def stop(self) -> None:
        """Hand every partition back (a graceful stop is taken over at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self._conn is not None:
            try:
                for part in sorted(self.held):
                    self._release(part)
            except StorageError:
                log.warning("could not hand the leases back; they expire in %.0fs", self.ttl)
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ the cycle
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cycle()
            except StorageError:
                log.exception("ownership heartbeat failed; retrying")
            except Exception:  # a bug must not end the heartbeats: log it and go on
                log.exception("ownership cycle failed")
            self._stop.wait(self.ttl / 3)

    def _tx(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn
        if conn is None:
            raise StorageError("ownership not started")
        conn.begin_write()
        try:
            rows = conn.execute(sql, params)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return rows

    def cycle(self) -> None:
        """One heartbeat: renew, hand back or take partitions."""
        self._tx(f"INSERT INTO central_workers (worker, seen_at) VALUES (?, {_NOW}) "
                 "ON CONFLICT (worker) DO UPDATE SET seen_at = excluded.seen_at",
                 (self.worker,))
        renewed = {int(p): int(t) for p, t in self._tx(
            f"UPDATE partition_leases SET expires_at = {_NOW} + ? WHERE worker = ? "
            "RETURNING part, token", (self.ttl, self.worker))}
        for part, token in list(self.held.items()):
            if renewed.get(part) != token:
                self._lose(part)
        live = self._tx(f"SELECT COUNT(*) FROM central_workers WHERE seen_at > {_NOW} - ?",
                        (self.ttl,))
        self._tx(f"DELETE FROM central_workers WHERE seen_at < {_NOW} - ?", (self.ttl * 10,))
        self.live_workers = max(1, int(live[0][0]))
        share = math.ceil(self.partitions / self.live_workers)
        while len(self.held) > share and not self._stop.is_set():
            self._release(max(self.held))
        stores = self._store_map()
        self._refresh(stores)
        while len(self.held) < share and not self._stop.is_set():
            if not self._acquire(stores):
                break

    def _store_map(self) -> dict[int, list[str]]:
        """partition → its stores: the store tokens' names and the stores in the database."""
        names: set[str] = set()
        tokens = self.config.http.store_tokens_dir
        if tokens is not None and Path(tokens).is_dir():
            names.update(p.name.removesuffix(".token") for p in Path(tokens).glob("*.token"))
        conn = self._conn
        if conn is not None:
            names.update(str(s) for (s,) in conn.execute("SELECT store FROM stores"))
        out: dict[int, list[str]] = {}
        for store in sorted(names):
            if STORE_RE.fullmatch(store) is not None:
                out.setdefault(self.fencing.partition(store), []).append(store)
        return out

    def _refresh(self, stores: dict[int, list[str]]) -> None:
        """Subscribe the stores that appeared in held partitions since the last heartbeat."""
        added: list[str] = []
        with self._lock:
            for part, topics in self.subscribed.items():
                wanted = self._topics(stores.get(part, []))
                known = set(topics)
                new = [t for t in wanted if t not in known]
                if new:
                    topics.extend(new)
                    added.extend(new)
        if added and self._subscribe is not None:
            self._subscribe(added)

    def _topics(self, stores: list[str]) -> list[str]:
        root = self.config.root
        return [f"{root}/v1/stores/{store}/{rest}" for store in stores for rest in TOPICS]

    def _acquire(self, stores: dict[int, list[str]]) -> bool:
        rows = self._tx(
            f"UPDATE partition_leases SET worker = ?, token = token + 1, expires_at = {_NOW} + ? "
            "WHERE part = (SELECT part FROM partition_leases WHERE worker IS NULL OR "
            f"expires_at < {_NOW} ORDER BY part LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING part, token", (self.worker, self.ttl))
        if not rows:
            return False
        part, token = int(rows[0][0]), int(rows[0][1])
        self.held[part] = token
        fencing = self.fencing
        partition = fencing.partition
        root = self.config.root

        def take(core: Core) -> tuple[None, list[Publish]]:
            fencing.held[part] = token
            core.load()  # the previous owner's watermarks, from the database
            acks = []
            for item in core.current_acks(now_ts()):
                split = store_from_topic(root, item.topic)
                if split is not None and partition(split[0]) == part:
                    acks.append(item)
            return None, acks

        self._writer(take)
        topics = self._topics(stores.get(part, []))
        with self._lock:
            self.subscribed[part] = topics
        if topics and self._subscribe is not None:
            self._subscribe(topics)
        self.changes["acquired"] += 1
        log.info("worker %s took partition %d (token %d)", self.worker, part, token)
        return True

    def _forget(self, part: int, flush: bool) -> None:
        with self._lock:
            topics = self.subscribed.pop(part, [])
        if topics and self._unsubscribe is not None:
            self._unsubscribe(topics)
        fencing = self.fencing

        def drop(core: Core) -> tuple[None, list[Publish]]:
            if flush and part in fencing.held:
                core.flush_projection()  # still fenced: our token is checked once more
            fencing.held.pop(part, None)
            if not flush:
                core.load()  # drop the lost stores' unprojected deltas: the new owner has them
            return None, []

        self._writer(drop)
        self.held.pop(part, None)

    def _release(self, part: int) -> None:
        token = self.held.get(part)
        self._forget(part, flush=True)
        self._tx("UPDATE partition_leases SET worker = NULL, expires_at = 0 WHERE part = ? "
                 "AND worker = ? AND token = ?", (part, self.worker, token))
        self.changes["released"] += 1
        log.info("worker %s handed partition %d back", self.worker, part)

    def _lose(self, part: int) -> None:
        self._forget(part, flush=False)
        self.changes["lost"] += 1
        log.warning("worker %s lost partition %d to another worker", self.worker, part)

    def _writer(self, job: Callable[[Core], tuple[None, list[Publish]]]) -> None:
        if self._call is not None:
            self._call(job)
