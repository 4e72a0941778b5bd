"""Presence reads -> visits. Pure (sans-IO): time is passed in, nothing is written.

A *read* is one sighting of a raw id (tag or beacon id) by a presence device, or the
device's report that the id is gone (``present=False``; the readers emit one "present"
when an id appears and one "gone" when it has not been seen for their window).

- A visit opens on the first sighting of a shopper with no open visit; ``entered_at`` is
  that sighting.
- While any device reports the shopper present, the visit stays open (``last_seen``
  follows the clock; :meth:`Sessioniser.refresh_present`). Once no device does, the visit
  closes when ``gap_s`` has passed without a new sighting, ``left_at`` = last sighting.
- Visits are keyed by pseudonym. Raw ids live only in the ``_recent`` table, which maps a
  raw id to its open visit so repeated reads skip the HMAC; an entry is dropped
  ``dedup_s`` after it was made (a shopper still being read is re-cached through one
  HMAC), when the id is reported gone, or on key rotation.
- On key rotation the previous key is kept (in memory only) for ``grace_s`` so shoppers
  in the store at that moment stay in their visit; then it is dropped.
- A visit reported present for more than ``max_visit_s`` (a fob left by the door) closes.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from edge_agent.visitors.pseudonym import Pseudonymiser

MAX_VISIT_S: Final = 12 * 3600.0


@dataclass(slots=True, eq=False)
class OpenVisit:
    visit_id: str
    visitor: str
    source: str
    zone: str
    device: str
    entered_at: float
    last_seen: float
    customer: str | None = None
    present: set[str] = field(default_factory=set)
    closed: bool = False
    persisted_seen: float | None = None
    """``last_seen`` as last written to the database (None: never written)."""

    def record(self, left_at: float) -> ClosedVisit:
        """This visit as closed at ``left_at``."""
        return ClosedVisit(self.visit_id, self.visitor, self.source, self.zone, self.device,
                           self.entered_at, left_at, self.customer)


@dataclass(frozen=True, slots=True)
class ClosedVisit:
    visit_id: str
    visitor: str
    source: str
    zone: str
    device: str
    entered_at: float
    left_at: float
    customer: str | None

    @property
    def dwell_s(self) -> int:
        return max(0, round(self.left_at - self.entered_at))


class RandomIds:
    """UUID4 strings from pooled ``os.urandom`` bytes (a fifth of ``str(uuid.uuid4())``'s
    cost; visits open on the read path)."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def __call__(self) -> str:
        if self._pos >= len(self._pool):
            self._pool = os.urandom(16 * 256)
            self._pos = 0
        h = self._pool[self._pos:self._pos + 16].hex()
        self._pos += 16
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class Sessioniser:
    def __init__(
        self,
        key: bytes,
        *,
        gap_s: float = 300.0,
        dedup_s: float = 10.0,
        max_visit_s: float = MAX_VISIT_S,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.gap_s = gap_s
        self.dedup_s = dedup_s
        self.max_visit_s = max_visit_s
        self._id_factory = id_factory or RandomIds()
        self._pseudo = Pseudonymiser(key)
        self._prev: Pseudonymiser | None = None
        self._prev_until = 0.0
        self._open: dict[str, OpenVisit] = {}
        # raw id -> (its open visit, when cached); insertion order = age, so expiry pops
        # from the front. The only place raw ids are held.
        self._recent: dict[str, tuple[OpenVisit, float]] = {}
        # (deadline, n, visit) for visits no device reports present; checked lazily.
        self._idle: list[tuple[float, int, OpenVisit]] = []
        self._pushes = 0
        self._next_scan = float("-inf")
        self.slow_reads = 0
        self.opened = 0

    # -- reads -----------------------------------------------------------------------------
    def read(  # noqa: PLR0917 - hot path: positional arguments are cheaper
        self, raw_id: str, device: str, source: str, zone: str, present: bool, now: float
    ) -> OpenVisit | None:
        """Record one read; returns the visit if this read opened it."""
        entry = self._recent.get(raw_id)
        if entry is not None and present:
            visit = entry[0]
            if not visit.closed:
                if now > visit.last_seen:  # noqa: PLR1730 - hot path: max() costs a call
                    visit.last_seen = now
                visit.present.add(device)
                return None
        return self._read_slow(raw_id, device, source, zone, present=present, now=now)

    def _read_slow(
        self, raw_id: str, device: str, source: str, zone: str, *, present: bool, now: float
    ) -> OpenVisit | None:
        self.slow_reads += 1
        visitor = self._pseudo(raw_id)
        visit = self._open.get(visitor)
        if visit is None and self._prev is not None and now < self._prev_until:
            visit = self._open.get(self._prev(raw_id))
        self._recent.pop(raw_id, None)
        if not present:
            if visit is not None:
                visit.present.discard(device)
                visit.last_seen = max(visit.last_seen, now)
                if not visit.present:
                    self._push_idle(visit)
            return None
        opened = None
        if visit is None:
            visit = OpenVisit(self._id_factory(), visitor, source, zone, device, now, now)
            self._open[visitor] = visit
            self.opened += 1
            opened = visit
        else:
            visit.last_seen = max(visit.last_seen, now)
        visit.present.add(device)
        self._recent[raw_id] = (visit, now)
        return opened

    def _push_idle(self, visit: OpenVisit) -> None:
        self._pushes += 1
        heapq.heappush(self._idle, (visit.last_seen + self.gap_s, self._pushes, visit))

    # -- time ------------------------------------------------------------------------------
    def tick(self, now: float) -> list[ClosedVisit]:
        """Forget raw ids cached ``dedup_s`` ago; close visits past the gap (and present
        ones past ``max_visit_s``, checked once a minute)."""
        recent = self._recent
        limit = now - self.dedup_s
        while recent:
            raw = next(iter(recent))
            if recent[raw][1] > limit:
                break
            del recent[raw]
        if self._prev is not None and now >= self._prev_until:
            self._prev = None
        closed: list[ClosedVisit] = []
        idle = self._idle
        while idle and idle[0][0] <= now:
            _, _, visit = heapq.heappop(idle)
            if visit.closed or visit.present:
                continue  # closed already, or present again (pushed anew when it goes)
            if visit.last_seen + self.gap_s <= now:
                closed.append(self._close(visit, visit.last_seen))
            else:
                self._push_idle(visit)  # seen again since it was queued
        if now >= self._next_scan:
            self._next_scan = now + 60.0
            closed.extend(
                self._close(visit, visit.entered_at + self.max_visit_s)
                for visit in list(self._open.values())
                if visit.present and now - visit.entered_at >= self.max_visit_s
            )
        return closed

    def refresh_present(self, now: float) -> None:
        """Visits a device reports present were seen until ``now`` (before saving them)."""
        for visit in self._open.values():
            if visit.present and now > visit.last_seen:
                visit.last_seen = now

    def _close(self, visit: OpenVisit, left_at: float) -> ClosedVisit:
        visit.closed = True
        del self._open[visit.visitor]
        return visit.record(max(left_at, visit.entered_at))

    def close_all(self) -> list[ClosedVisit]:
        """Close every open visit at its last sighting (used by tests and tools)."""
        return [self._close(visit, visit.last_seen) for visit in list(self._open.values())]

    def rotate(self, key: bytes, now: float, *, grace_s: float) -> None:
        """Use ``key`` from now on; the previous key stays in memory for ``grace_s``."""
        self._prev = self._pseudo
        self._prev_until = now + grace_s
        self._pseudo = Pseudonymiser(key)
        self._recent.clear()

    def forget_previous_key(self) -> None:
        self._prev = None

    # -- state -----------------------------------------------------------------------------
    def restore(self, visits: Iterable[OpenVisit]) -> None:
        for visit in visits:
            visit.present = set()
            visit.closed = False
            self._open[visit.visitor] = visit
            self._push_idle(visit)

    @property
    def open_visits(self) -> list[OpenVisit]:
        return list(self._open.values())

    @property
    def raw_ids_held(self) -> int:
        return len(self._recent)

    @property
    def has_previous_key(self) -> bool:
        return self._prev is not None
