"""What central remembers about stores for ATP, between transactions: their attributes,
last contact, recent sell-through, rejection holds, RFID counts, today's order count, the
unfillable queue's quantities, and the ATP changes feed.

Written by the writer thread (:mod:`central.orders`), read by the HTTP threads; one lock
guards it. Everything but the sell-through rates and the feed is also in the database and
reloaded by :meth:`OmniState.load` (at start, and after a rolled-back group).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from central.atp import CellFacts, StoreAtp, StoreFacts, network_atp, store_atp
from central.omni_config import OmniSettings, StoreAttrs
from central.storage import Connection

FEED_MAX = 200_000
"""Changes remembered; a cursor older than the oldest kept one must start over."""


class CursorExpired(ValueError):
    """The cursor belongs to another run of central, or to changes no longer kept."""


@dataclass(slots=True)
class _Velocity:
    """Units sold per SKU in the current window and the one before it."""

    start: float
    cur: dict[str, float] = field(default_factory=dict)
    prev: dict[str, float] | None = None


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class OmniState:
    def __init__(self, settings: OmniSettings, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.policy = settings.policy()
        self.wall = wall
        self.lock = threading.Lock()
        self.attrs: dict[str, StoreAttrs] = dict(settings.stores)
        self.contact: dict[str, float] = {}
        self.velocity: dict[str, _Velocity] = {}
        self.holds: dict[tuple[str, str], int] = {}
        self.rfid: dict[tuple[str, str], float] = {}
        self.day_orders: dict[str, tuple[str, int]] = {}
        self.queued: dict[str, int] = {}
        self.queued_orders: dict[str, dict[str, int]] = {}
        self.boot = uuid.uuid4().hex[:8]
        self.cursor = 0
        self._feed: OrderedDict[str, int] = OrderedDict()
        self._floor = 0  # cursors at or above this one can be answered

    # ------------------------------------------------------------------ load
    def load(self, conn: Connection) -> None:
        """(Re)read the persisted facts (run inside a transaction or in autocommit)."""
        now = self.wall()
        with self.lock:
            self.attrs = dict(self.settings.stores)
            for store, attrs in conn.execute("SELECT store, attrs FROM omni_stores"):
                self.attrs[store] = StoreAttrs.model_validate(orjson.loads(attrs))
            self.contact = {s: float(t) for s, t, *_ in conn.execute(
                "SELECT store, last_contact FROM omni_contact")}
            self.day_orders = {s: (d, int(n)) for s, d, n in conn.execute(
                "SELECT store, day, day_orders FROM omni_contact")}
            # a store central knows but never timed: fresh as of now (no history to judge)
            for (store,) in conn.execute("SELECT store FROM stores"):
                self.contact.setdefault(store, now)
            self.holds = {(s, k): int(q) for s, k, q in conn.execute(
                "SELECT store, sku, qty FROM omni_holds")}
            self.rfid = {(s, k): float(t) for s, k, t, src in conn.execute(
                "SELECT store, sku, counted_at, source FROM omni_counts") if src == "rfid"}
            self.queued_orders = {}
            for order_id, body in conn.execute(
                    "SELECT order_id, body FROM omni_orders WHERE state = 'queued' "
                    "ORDER BY created, order_id"):
                lines: dict[str, int] = {}
                for line in orjson.loads(body)["lines"]:
                    lines[line["sku"]] = lines.get(line["sku"], 0) + line["qty"]
                self.queued_orders[order_id] = lines
            self._sum_queued()
        self.note_all()

    def _sum_queued(self) -> None:
        queued: dict[str, int] = {}
        for lines in self.queued_orders.values():
            for sku, qty in lines.items():
                queued[sku] = queued.get(sku, 0) + qty
        self.queued = queued

    def set_queued(self, order_id: str, lines: dict[str, int] | None) -> None:
        """The open quantities of a queued order (None: no longer queued)."""
        with self.lock:
            if lines is None:
                if self.queued_orders.pop(order_id, None) is None:
                    return
            else:
                self.queued_orders[order_id] = dict(lines)
            self._sum_queued()

    # ------------------------------------------------------------------ writer side
    def sold(self, store: str, counts: dict[str, int], now: float) -> None:
        """Units of each SKU the store sold (heard at ``now``)."""
        window = self.settings.velocity_window
        v = self.velocity.get(store)
        if v is None:
            v = self.velocity[store] = _Velocity(now)
        if now - v.start >= window:
            v.prev = v.cur if now - v.start < 2 * window else {}
            v.cur = {}
            v.start = now
        cur = v.cur
        get = cur.get
        for sku, qty in counts.items():
            cur[sku] = get(sku, 0.0) + qty

    def rate(self, store: str, sku: str, at: float) -> float:
        """Units per second sold recently at ``store`` (as of ``at``)."""
        v = self.velocity.get(store)
        if v is None:
            return 0.0
        window = self.settings.velocity_window
        elapsed = min(max(at - v.start, 0.0), window)
        prev = 0.0 if v.prev is None else v.prev.get(sku, 0.0)
        span = elapsed + (0.0 if v.prev is None else window)
        return (prev + v.cur.get(sku, 0.0)) / max(span, 60.0)

    def orders_today(self, store: str, now: float) -> int:
        day, n = self.day_orders.get(store, ("", 0))
        return n if day == utc_day(now) else 0

    # ------------------------------------------------------------------ facts and ATP
    def store_facts(self, store: str, now: float) -> StoreFacts:
        attrs = self.attrs.get(store) or StoreAttrs()
        excluded = None
        if attrs.closed:
            excluded = "closed"
        elif not attrs.fulfilling:
            excluded = "not_fulfilling"
        elif (attrs.capacity_per_day is not None
              and self.orders_today(store, now) >= attrs.capacity_per_day):
            excluded = "capacity"
        silent = max(0.0, now - self.contact.get(store, now))
        return StoreFacts(store, silent_for=silent, excluded=excluded,
                          safety=attrs.safety_stock)

    def cell_atp(self, facts: StoreFacts, sku: str, cell: tuple[int, int], now: float,
                 category: str | None = None) -> StoreAtp:
        store = facts.store
        rfid_at = self.rfid.get((store, sku))
        facts_ = CellFacts(*cell, hold=self.holds.get((store, sku), 0),
                         rate=self.rate(store, sku, self.contact.get(store, now)),
                         rfid_age_days=None if rfid_at is None else (now - rfid_at) / 86400,
                         category=category)
        return store_atp(self.policy, sku, facts, facts_)

    def read_atp(self, conn: Connection, skus: list[str], stores: set[str] | None,
                 detail: bool) -> list[dict[str, Any]]:
        """ATP of ``skus`` per store and network, from the stock table (run inside one
        consistent read)."""
        marks = ", ".join("?" * len(skus))
        rows = conn.execute(f"SELECT store, sku, on_hand, reserved FROM stock "
                            f"WHERE sku IN ({marks})", skus)
        categories: dict[str, str] = {}
        if self.policy.safety_by_category:
            for sku, raw in conn.execute(
                    f"SELECT sku, item FROM catalog WHERE sku IN ({marks})", skus):
                category = orjson.loads(raw).get("category")
                if isinstance(category, str):
                    categories[sku] = category
        now = self.wall()
        per: dict[str, list[StoreAtp]] = {sku: [] for sku in skus}
        with self.lock:
            facts: dict[str, StoreFacts] = {}
            for store, sku, on, res in rows:
                f = facts.get(store)
                if f is None:
                    f = facts[store] = self.store_facts(store, now)
                per[sku].append(self.cell_atp(f, sku, (int(on), int(res)), now,
                                              categories.get(sku)))
            queued = dict(self.queued)
        out: list[dict[str, Any]] = []
        for sku in skus:
            cells = sorted(per[sku], key=lambda c: c.store)
            item: dict[str, Any] = {"sku": sku,
                                    "atp": network_atp(self.policy, cells, queued.get(sku, 0)),
                                    "queued": queued.get(sku, 0)}
            if detail or stores is not None:
                item["stores"] = [c.as_json() for c in cells
                                  if stores is None or c.store in stores]
            out.append(item)
        return out

    # ------------------------------------------------------------------ changes feed
    def note(self, keys: Iterable[str]) -> None:
        """Record that the ATP of these keys (``sku:X`` or ``store:S``) changed."""
        with self.lock:
            feed = self._feed
            for key in keys:
                self.cursor += 1
                feed[key] = self.cursor
                feed.move_to_end(key)
            while len(feed) > FEED_MAX:
                _, dropped = feed.popitem(last=False)
                self._floor = dropped

    def note_all(self) -> None:
        self.note(["all"])

    def token(self) -> str:
        return f"{self.boot}-{self.cursor}"

    def changes(self, since: str, limit: int) -> tuple[list[str], list[str], bool, str]:
        """(skus, stores, everything, next cursor) changed after cursor ``since``."""
        boot, _, number = since.partition("-")
        if boot != self.boot or not number.isdigit():
            raise CursorExpired(since)
        after = int(number)
        with self.lock:
            if after < self._floor or after > self.cursor:
                raise CursorExpired(since)
            newer: list[tuple[str, int]] = []
            for key, n in reversed(self._feed.items()):
                if n <= after:
                    break
                newer.append((key, n))
            last = self.cursor
        newer.reverse()  # oldest first: a truncated answer resumes where it stopped
        if len(newer) > limit:
            newer = newer[:limit]
            last = newer[-1][1]
        skus: list[str] = []
        stores: list[str] = []
        everything = False
        for key, _ in newer:
            kind, _, name = key.partition(":")
            if kind == "sku":
                skus.append(name)
            elif kind == "store":
                stores.append(name)
            else:
                everything = True
        return skus, stores, everything, f"{self.boot}-{last}"
