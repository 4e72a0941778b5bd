"""Capped exponential backoff: the project's one implementation (sans-IO, stdlib only).

It lives in :mod:`drivers` because ``drivers`` is the leaf that may import nothing of
ours: the device readers use it here, and :mod:`sync.backoff` (the MQTT link's reconnect
and resync) re-exports it, which the import rules allow (``sync`` imports neither
``edge_agent`` nor ``central``; ``drivers`` imports nothing).  Importing it does not load
the readers (``drivers/__init__`` imports them lazily).

Two jitters, after the AWS architecture note "Exponential Backoff And Jitter":

* ``"full"``: ``uniform(0, d)``; many clients that failed together spread widest (the
  MQTT link: a whole chain's stores reconnecting to one broker).
* ``"equal"``: ``d/2 + uniform(0, d/2)``; never retries sooner than half the step (a
  serial port that is absent should not be reopened in a tight loop).

where ``d = min(cap, base * 2**attempt)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Backoff", "Jitter", "ceiling"]

Jitter = Literal["full", "equal"]


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The un-jittered delay of retry number ``attempt`` (0-based)."""
    return min(cap, base * (1 << min(attempt, 32)))


@dataclass
class Backoff:
    """``next_delay()`` advances the attempt counter; ``reset()`` after a success.

    ``max_delay()`` is a jittered delay near the cap (uniform(cap/2, cap)), for a failure
    that retrying quickly cannot fix (refused credentials, a missing driver extra).
    """

    base: float = 0.5
    cap: float = 60.0
    jitter: Jitter = "full"
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        d = ceiling(self.attempt, self.base, self.cap)
        self.attempt += 1
        if self.jitter == "equal":
            return d / 2 + self.rng.uniform(0.0, d / 2)
        return self.rng.uniform(0.0, d)

    def max_delay(self) -> float:
        self.attempt += 1
        return self.rng.uniform(self.cap / 2, self.cap)

    def reset(self) -> None:
        self.attempt = 0
