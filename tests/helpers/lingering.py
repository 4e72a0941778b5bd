"""What a test left running on its event loop: tasks, and timers not yet due.

asyncio offers no public list of a loop's timers, so the suite's loops are
:class:`TrackingLoop`\\ s: ``call_at`` (which ``call_later`` goes through) is a public
method, and the override keeps a weak reference to every timer handle it returns.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any


class TrackingLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._timers: weakref.WeakSet[asyncio.TimerHandle] = weakref.WeakSet()

    def call_at(self, when: float, callback: Any, *args: Any,  # type: ignore[override]
                context: Any = None) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        self._timers.add(handle)
        return handle

    def pending_timers(self) -> list[asyncio.TimerHandle]:
        now = self.time()
        return [h for h in self._timers if not h.cancelled() and h.when() > now]


async def lingering(before: set[asyncio.Task[Any]], *, turns: int = 20
                    ) -> tuple[list[asyncio.Task[Any]], list[asyncio.TimerHandle]]:
    """Tasks started since ``before`` that are still running, and pending timers; tasks
    that are merely finishing (cancelled, closing) get ``turns`` loop iterations first."""
    current = asyncio.current_task()
    left: list[asyncio.Task[Any]] = []
    for _ in range(turns):
        left = [t for t in asyncio.all_tasks()
                if t is not current and t not in before and not t.done()]
        if not left:
            break
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    timers = loop.pending_timers() if isinstance(loop, TrackingLoop) else []
    return left, timers
