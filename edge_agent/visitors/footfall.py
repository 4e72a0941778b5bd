"""Footfall periods and opening hours. Pure: no I/O, time passed in.

Periods lie on a grid of ``period_s`` seconds from the Unix epoch (900 s periods start at
:00, :15, :30, :45 in every time zone whose offset is a multiple of 15 minutes). A period
is *during opening hours* when it overlaps the store's local opening time on any day.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def period_start(ts: float, period_s: int) -> int:
    return int(ts // period_s) * period_s


def parse_hhmm(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


class OpeningHours:
    """``opening_hours = ("08:00", "20:00")`` in ``timezone``; closing <= opening means the
    store closes after midnight; equal times mean open all day."""

    def __init__(self, hours: tuple[str, str], timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self.opens = parse_hhmm(hours[0])
        self.closes = parse_hhmm(hours[1])
        self.always = self.opens == self.closes

    def _windows(self, day: date) -> tuple[float, float]:
        start = datetime.combine(day, self.opens, self.tz)
        end_day = day if self.closes > self.opens else day + timedelta(days=1)
        end = datetime.combine(end_day, self.closes, self.tz)
        return start.timestamp(), end.timestamp()

    def overlaps(self, start: float, end: float) -> bool:
        """True if [start, end) meets opening time."""
        if self.always:
            return True
        first = datetime.fromtimestamp(start, self.tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self.tz).date()
        day = first
        while day <= last:
            open_ts, close_ts = self._windows(day)
            if start < close_ts and end > open_ts:
                return True
            day += timedelta(days=1)
        return False


def local_day_bounds(ts: float, timezone: str) -> tuple[float, float]:
    """Start and end (Unix seconds) of the local calendar day containing ``ts``."""
    tz = ZoneInfo(timezone)
    day = datetime.fromtimestamp(ts, tz).date()
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start.timestamp(), end.timestamp()


def periods_between(start: float, end: float, period_s: int) -> Iterator[int]:
    """Grid period starts p with start <= p < end (start rounded up to the grid)."""
    first = -(-int(start) // period_s) * period_s
    return iter(range(first, math.ceil(end), period_s))


class FootfallCounter:
    """Door events summed per (door, period) in memory until the engine persists them."""

    __slots__ = ("_counts", "period_s")

    def __init__(self, period_s: int) -> None:
        self.period_s = period_s
        self._counts: dict[tuple[str, int], list[int]] = {}

    def add(self, door: str, direction: str, count: int, now: float) -> None:
        key = (door, period_start(now, self.period_s))
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [0, 0]
        entry[0 if direction == "in" else 1] += count

    def drain(self) -> list[tuple[str, int, int, int]]:
        """(door, period_start, entries, exits) deltas since the last drain."""
        out = [(door, start, c[0], c[1]) for (door, start), c in self._counts.items()]
        self._counts = {}
        return out

    def restore(self, deltas: list[tuple[str, int, int, int]]) -> None:
        """Put back deltas whose write failed, so they are retried."""
        for door, start, entries, exits in deltas:
            entry = self._counts.setdefault((door, start), [0, 0])
            entry[0] += entries
            entry[1] += exits

    def pending(self, door: str, start: int) -> tuple[int, int]:
        entry = self._counts.get((door, start))
        return (entry[0], entry[1]) if entry else (0, 0)
