"""Presence deduplication for repeated reads (RFID, BLE).

A key is *present* from its first sighting; further sightings only refresh it.
It is *gone* once it has not been seen for ``window`` seconds.  The table is
bounded: when ``max_keys`` is reached the oldest eighth of the entries is
evicted and reported as gone by the next :meth:`PresenceTracker.expire`.
"""

from __future__ import annotations

__all__ = ["PresenceTracker"]


class PresenceTracker:
    def __init__(self, window: float, max_keys: int = 65536) -> None:
        if window <= 0:
            raise ValueError("window must be > 0")
        self.window = window
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._evicted: list[str] = []

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: str) -> bool:
        return key in self._last

    def seen(self, key: str, now: float) -> bool:
        """Record a sighting; True if ``key`` was not present (emit "present")."""
        last = self._last
        if key in last:
            last[key] = now
            return False
        if len(last) >= self.max_keys:
            self._evict()
        last[key] = now
        return True

    def _evict(self) -> None:
        # Evict the oldest eighth in one pass: O(n log n) once per n/8 new keys,
        # so a flood of distinct ids costs O(log n) per read, not O(n).
        last = self._last
        times = sorted(last.values())
        cutoff = times[max(0, len(times) // 8 - 1)]
        victims = [k for k, t in last.items() if t <= cutoff]
        for k in victims:
            del last[k]
        self._evicted.extend(victims)

    def expire(self, now: float) -> list[str]:
        """Keys gone (not seen for ``window`` seconds, or evicted), removed from the table."""
        limit = now - self.window
        gone = self._evicted
        self._evicted = []
        gone.extend(k for k, t in self._last.items() if t <= limit)
        for k in gone:
            self._last.pop(k, None)
        return gone

    def clear(self) -> list[str]:
        """Forget everything; returns the keys that were present."""
        keys = self._evicted + list(self._last)
        self._evicted = []
        self._last.clear()
        return keys
