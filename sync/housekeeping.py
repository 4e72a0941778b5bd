"""The store's sync housekeeping: prune acknowledged events, release expired reservations.

:meth:`Housekeeping.run` prunes events central acknowledged more than
``retention_days`` ago every ``prune_interval``, and releases expired reservations at
the earliest ``expires_at`` (at least every ``reservation_check_interval``, and at
once when :attr:`Housekeeping.reservations_changed` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sync.store_port import StorePort
from sync.store_settings import SyncSettings
from sync.wire import format_ts, utc_now

__all__ = ["Housekeeping"]

log = logging.getLogger("sync.store")


class Housekeeping:
    """Pruning and reservation expiry through the store port (one task runs :meth:`run`)."""

    def __init__(self, settings: SyncSettings, port: StorePort, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._port = port
        self._clock = clock
        self.reservations_changed = asyncio.Event()
        self.events_pruned = 0

    async def run(self) -> None:
        next_prune = 0.0
        next_expiry = 0.0
        while True:
            now = self._clock()
            if now >= next_prune:
                cutoff = format_ts(utc_now() - timedelta(days=self._settings.retention_days))
                pruned = await self._port.prune_acked(cutoff)
                self.events_pruned += pruned
                if pruned:
                    log.info("sync: pruned %d acknowledged events older than %s", pruned, cutoff)
                next_prune = now + self._settings.prune_interval
            if now >= next_expiry:
                self.reservations_changed.clear()
                expired = await self._port.expire_reservations()
                if expired:
                    log.info("sync: released %d expired reservations", expired)
                # At the earliest expires_at, not at the next poll: a web order's stock
                # comes back on time (the interval bounds a clock step).
                due = await self._port.next_reservation_expiry()
                wait = self._settings.reservation_check_interval
                next_expiry = self._clock() + (wait if due is None else min(wait, due + 0.01))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(next_prune, next_expiry)
                                               - self._clock())):
                    await self.reservations_changed.wait()
                    next_expiry = 0.0  # commands applied: look again at once
