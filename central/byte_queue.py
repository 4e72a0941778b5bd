"""The writer's inbox: a FIFO bounded by bytes, not by count.

MQTT messages range from a 100-byte ack to a 1 MiB event batch, so a count bound is either
tiny for batches or gigabytes for floods. Here ``put`` blocks once ``max_bytes`` are queued
(the MQTT network thread stops reading, and TCP pushes back on the broker); an item larger
than the whole budget still passes when the inbox is empty, so nothing can wedge it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class ByteBoundedInbox(Generic[T]):
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, item: T, size: int) -> None:
        with self._not_full:
            while self._items and self._bytes + size > self.max_bytes:
                self._not_full.wait()
            self._items.append((item, size))
            self._bytes += size
            self._not_empty.notify()

    def get(self, timeout: float) -> T | None:
        """The oldest item, waiting up to ``timeout`` seconds; None if there is none."""
        deadline = time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._not_empty.wait(remaining)
            return self._take()

    def get_nowait(self) -> T | None:
        with self._lock:
            return self._take() if self._items else None

    def _take(self) -> T:
        item, size = self._items.popleft()
        self._bytes -= size
        self._not_full.notify_all()
        return item

    def qsize(self) -> int:
        with self._lock:
            return len(self._items)

    def queued_bytes(self) -> int:
        with self._lock:
            return self._bytes
