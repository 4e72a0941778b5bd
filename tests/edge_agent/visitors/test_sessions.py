"""The pure sessioniser and footfall helpers."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.visitors.footfall import (
    FootfallCounter,
    OpeningHours,
    local_day_bounds,
    period_start,
    periods_between,
)
from edge_agent.visitors.pseudonym import Pseudonymiser, new_key, pseudonym
from edge_agent.visitors.sessions import RandomIds, Sessioniser

KEY = bytes(range(32))


def read(s: Sessioniser, raw: str, now: float, present: bool = True, device: str = "d1") -> bool:
    return s.read(raw, device=device, source="em4100", zone="z", present=present,
                  now=now) is not None


def test_pseudonym_is_truncated_hmac_and_normalised() -> None:
    expected = hmac.new(KEY, b"0A1B2C3D4E", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(KEY, " 0a1b2c3d4e ") == expected
    assert Pseudonymiser(KEY)("0A1B2C3D4E") == expected
    assert pseudonym(new_key(), "0A1B2C3D4E") != expected


def test_reads_within_the_gap_are_one_visit_and_the_gap_closes_it() -> None:
    s = Sessioniser(KEY, gap_s=300, dedup_s=10)
    assert read(s, "A", 0.0)
    assert not read(s, "A", 5.0)  # duplicate
    read(s, "A", 6.0, present=False)
    assert s.tick(200.0) == []
    assert not read(s, "A", 250.0)  # flap within the gap: same visit
    read(s, "A", 251.0, present=False)
    assert s.tick(550.0) == []
    [visit] = s.tick(551.0)
    assert (visit.entered_at, visit.left_at, visit.dwell_s) == (0.0, 251.0, 251)
    assert visit.visitor == pseudonym(KEY, "A")
    assert read(s, "A", 600.0)  # a new visit afterwards


def test_raw_ids_are_forgotten_after_the_dedup_window() -> None:
    s = Sessioniser(KEY, gap_s=300, dedup_s=10)
    read(s, "A", 0.0)
    read(s, "B", 0.0)
    read(s, "B", 1.0, present=False)  # gone: dropped at once
    assert s.raw_ids_held == 1
    read(s, "A", 5.0)  # a duplicate does not extend the raw id's stay
    s.tick(9.0)
    assert s.raw_ids_held == 1
    s.tick(10.0)
    assert s.raw_ids_held == 0
    assert not read(s, "A", 11.0)  # still the same visit, found through its pseudonym
    assert s.raw_ids_held == 1
    assert len(s.open_visits) == 2  # visits keep only pseudonyms


def test_present_on_two_devices_needs_both_gone() -> None:
    s = Sessioniser(KEY, gap_s=60, dedup_s=10)
    read(s, "A", 0.0, device="d1")
    read(s, "A", 1.0, device="d2")
    read(s, "A", 2.0, present=False, device="d1")
    assert s.tick(100.0) == []  # still present on d2: last_seen follows the clock
    read(s, "A", 101.0, present=False, device="d2")
    [visit] = s.tick(161.0)
    assert visit.dwell_s == 101


def test_stuck_presence_is_capped() -> None:
    s = Sessioniser(KEY, gap_s=60, dedup_s=10, max_visit_s=3600)
    read(s, "A", 0.0)
    assert s.tick(3599.0) == []
    [visit] = s.tick(3660.0)  # checked once a minute, closed at the cap
    assert visit.dwell_s == 3600


def test_rotation_grace_then_new_pseudonym() -> None:
    s = Sessioniser(KEY, gap_s=60, dedup_s=10)
    read(s, "A", 0.0)
    read(s, "A", 1.0, present=False)
    other = bytes(32)
    s.rotate(other, 10.0, grace_s=60)
    assert not read(s, "A", 20.0)  # still the old visit (grace)
    read(s, "A", 21.0, present=False)
    s.tick(70.0)
    assert not s.has_previous_key
    [old] = s.tick(81.0)
    assert old.visitor == pseudonym(KEY, "A")
    assert read(s, "A", 100.0)
    assert s.open_visits[0].visitor == pseudonym(other, "A") != old.visitor


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), min_size=1,
                max_size=40))
def test_visits_are_the_clusters_of_reads_separated_by_the_gap(times: list[float]) -> None:
    gap = 300.0
    times = sorted(times)
    s = Sessioniser(KEY, gap_s=gap, dedup_s=10)
    closed = []
    for t in times:
        closed += s.tick(t)
        read(s, "A", t)
        read(s, "A", t, present=False)
    closed += s.tick(times[-1] + gap)
    clusters = 1 + sum(1 for a, b in itertools.pairwise(times) if b - a >= gap)
    assert len(closed) == clusters
    assert sum(v.left_at - v.entered_at for v in closed) <= times[-1] - times[0] + 1e-9
    assert closed[0].entered_at == times[0]
    assert closed[-1].left_at == times[-1]


def test_opening_hours_in_the_store_time_zone() -> None:
    hours = OpeningHours(("08:00", "20:00"), "Europe/Berlin")  # UTC+1 in November
    at = datetime(2026, 11, 25, 6, 45, tzinfo=UTC).timestamp()  # 07:45 Berlin
    assert not hours.overlaps(at, at + 900)
    assert hours.overlaps(at + 900, at + 1800)
    close = datetime(2026, 11, 25, 19, 0, tzinfo=UTC).timestamp()  # 20:00 Berlin
    assert hours.overlaps(close - 900, close)
    assert not hours.overlaps(close, close + 900)
    night = OpeningHours(("18:00", "02:00"), "UTC")
    one_am = datetime(2026, 11, 25, 1, 0, tzinfo=UTC).timestamp()
    assert night.overlaps(one_am, one_am + 900)
    assert not night.overlaps(one_am + 3600, one_am + 4500)
    assert OpeningHours(("00:00", "00:00"), "UTC").overlaps(one_am, one_am + 1)


def test_periods_and_counters() -> None:
    assert period_start(1000.0, 900) == 900
    assert list(periods_between(899.5, 2700, 900)) == [900, 1800]
    start, end = local_day_bounds(datetime(2026, 11, 25, 23, 30, tzinfo=UTC).timestamp(),
                                  "Europe/Berlin")
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert end - start == 86400
    counter = FootfallCounter(900)
    counter.add("door-1", "in", 2, 10.0)
    counter.add("door-1", "out", 1, 20.0)
    counter.add("door-1", "in", 1, 950.0)
    deltas = counter.drain()
    assert sorted(deltas) == [("door-1", 0, 2, 1), ("door-1", 900, 1, 0)]
    assert counter.drain() == []
    counter.restore(deltas)
    assert counter.pending("door-1", 0) == (2, 1)


def test_visit_ids_are_distinct_uuid4s() -> None:
    ids = RandomIds()
    made = [ids() for _ in range(600)]  # more than one pool
    assert len(set(made)) == 600
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
