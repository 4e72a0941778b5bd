"""The one backoff: both jitters, the cap, and that ``sync`` reuses it without the readers."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

import sync.backoff
from drivers.backoff import Backoff, Jitter, ceiling
from drivers.reader_base import backoff_delay


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_delays_stay_within_the_jitter_band_and_the_cap(jitter: Jitter) -> None:
    b = Backoff(0.5, 30.0, jitter, rng=random.Random(7))
    for attempt in range(80):
        d = ceiling(attempt, 0.5, 30.0)
        got = b.next_delay()
        low = 0.0 if jitter == "full" else d / 2
        assert low <= got <= d <= 30.0
    assert b.attempt == 80


def test_equal_jitter_never_retries_sooner_than_half_the_step() -> None:
    b = Backoff(1.0, 8.0, "equal", attempt=3, rng=random.Random(1))
    assert all(4.0 <= b.next_delay() <= 8.0 for _ in range(200))


def test_max_delay_is_near_the_cap_and_reset_starts_over() -> None:
    b = Backoff(1.0, 10.0, rng=random.Random(2))
    assert all(5.0 <= b.max_delay() <= 10.0 for _ in range(50))
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() <= 1.0


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert ceiling(10_000, 0.5, 60.0) == 60.0
    assert 30.0 <= backoff_delay(10_000, 0.5, 60.0) <= 60.0


def test_sync_uses_the_same_class() -> None:
    assert sync.backoff.Backoff is Backoff


def test_importing_the_backoff_does_not_load_the_readers() -> None:
    code = ("import sys, sync.backoff; "
            "print(sorted(m for m in sys.modules if m.startswith(('drivers', 'serial'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert out.strip() == "['drivers', 'drivers.backoff']"
