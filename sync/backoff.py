"""Capped exponential backoff with full jitter (sans-IO: the caller sleeps)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``delay = uniform(0, min(cap, base * 2**attempt))`` ("full jitter").

    ``next_delay()`` advances the attempt counter; ``reset()`` after a success.
    ``max_delay()`` is a jittered delay near the cap, used after an authentication
    failure, which retrying quickly cannot fix.
    """

    base: float = 0.5
    cap: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def max_delay(self) -> float:
        self.attempt += 1
        return self.rng.uniform(self.cap / 2, self.cap)

    def reset(self) -> None:
        self.attempt = 0
