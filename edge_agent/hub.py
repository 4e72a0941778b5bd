"""In-process fan-out of live events (scans, tags, device state, customer arrivals).

Publishers never wait: each subscriber has a bounded queue, and a subscriber that falls
behind loses its oldest items (counted in ``dropped``) rather than slowing the store.
Used by the API's server-sent-event stream and ``edge-agent devices tail``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from drivers.carddata import redact


@dataclass(slots=True, eq=False)  # identity hashing: each subscription is distinct
class Subscription:
    topics: frozenset[str] | None
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000)
    )
    dropped: int = 0


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Deliver ``data`` under ``topic`` (e.g. ``scan``, ``tag``, ``device``). Never blocks.

        Card data is masked whoever published it (the stream reaches POS screens)."""
        if not self._subscribers:
            return
        data = redact(data)
        for sub in self._subscribers:
            if sub.topics is not None and topic not in sub.topics:
                continue
            if sub.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait((topic, data))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topics: set[str] | None = None
    ) -> AsyncIterator[asyncio.Queue[tuple[str, dict[str, Any]]]]:
        sub = Subscription(frozenset(topics) if topics else None)
        self._subscribers.add(sub)
        try:
            yield sub.queue
        finally:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
