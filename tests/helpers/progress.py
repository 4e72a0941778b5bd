"""Waits that follow progress, not the wall clock: a wait fails only when nothing it
watches has changed for ``stall_s`` seconds, however long the whole wait takes.

On a loaded machine (load 6 on 2 cores, two ``make test`` at once) a fixed total deadline
fails a run that is slow but moving; a stall deadline fails only a run that is stuck.
The pytest-timeout of each test stays as the last resort against a run that keeps moving
without ever finishing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class StallWatch:
    """Remembers when a watched value last changed."""

    def __init__(self, stall_s: float, what: str) -> None:
        self.stall_s = stall_s
        self.what = what
        self._value: Hashable = object()
        self._changed = time.monotonic()

    def see(self, value: Hashable) -> None:
        if value != self._value:
            self._value = value
            self._changed = time.monotonic()

    def idle_s(self) -> float:
        return time.monotonic() - self._changed

    def check(self) -> None:
        """Raise when nothing changed for ``stall_s`` seconds."""
        if self.idle_s() > self.stall_s:
            raise AssertionError(f"no progress for {self.stall_s:.0f} s waiting for "
                                 f"{self.what} (last state: {self._value!r})")


def wait_progress(done: Callable[[], Any], progress: Callable[[], Hashable], stall_s: float,
                  what: str, interval: float = 0.05) -> Any:
    """Poll ``done`` until truthy; fail when ``progress()`` stood still for ``stall_s``."""
    watch = StallWatch(stall_s, what)
    while True:
        watch.see(progress())
        value = done()
        if value:
            return value
        watch.check()
        time.sleep(interval)


async def until_progress(done: Callable[[], Awaitable[Any]],
                         progress: Callable[[], Awaitable[Hashable]], stall_s: float,
                         what: str, interval: float = 0.05) -> Any:
    """The asyncio form of :func:`wait_progress`."""
    watch = StallWatch(stall_s, what)
    while True:
        watch.see(await progress())
        value = await done()
        if value:
            return value
        watch.check()
        await asyncio.sleep(interval)
