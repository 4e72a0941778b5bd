"""The wait before a reconnect, and the link's backoff (full jitter).

``Backoff`` is the project's one implementation, :class:`drivers.backoff.Backoff`
(sans-IO, the caller sleeps; see that module for why it lives in ``drivers``);
``wait_to_reconnect`` is the one sleep that a reachability signal may cut short.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from drivers.backoff import Backoff

__all__ = ["Backoff", "wait_to_reconnect"]

log = logging.getLogger(__name__)


def probe_interval(outage_s: float, base: float, *, fast_for: float, cap: float) -> float:
    """The reachability probe's interval once the broker has been away ``outage_s`` s.

    ``base`` for the first ``fast_for`` seconds (a broker that returns within minutes is
    noticed within about ``base``), then doubling with every further ``fast_for`` seconds
    away, up to ``cap``: a store offline for hours probes every ``cap/2..cap`` seconds
    instead of every second (each probe is a TCP connect: idle CPU, and SYNs at a broker
    or firewall that is not there), at the price of noticing the return that much later.
    Never below ``base``.
    """
    if outage_s <= fast_for:
        return base
    grown: float = base * 2.0 ** ((outage_s - fast_for) / fast_for)
    return max(base, min(cap, grown))


async def wait_to_reconnect(
    delay: float,
    reachable: Callable[[], Awaitable[bool]],
    *,
    probe_interval: float,
    spread: float,
    rng: random.Random,
    peer_was_down: bool = False,
) -> bool:
    """Sleep ``delay`` seconds, cut short once a peer that was down answers again.

    aioesphomeapi's lesson: a backoff protects a peer from clients that fail *at* it, but
    a peer that was simply away should be noticed within a probe interval, not after a
    delay grown towards its cap. ``reachable`` is probed every uniform(probe/2, probe)
    seconds, and once at the start. Only a probe that succeeds after one that failed
    counts as the signal (a peer that accepts TCP and then refuses us must not turn the
    backoff into a tight loop); the caller then reconnects after uniform(0, spread)
    seconds, so that many clients returning at once spread their connects. Returns True
    when cut short.

    ``peer_was_down``: the failure itself showed the peer away (its TCP port refused the
    connection), so the probe at the start is skipped: a peer that came back between
    that refusal and the probe would otherwise look like one refusing us, and the whole
    backoff would run (measured: 4 of 20 returns took 6-8 s instead of about 1 s).
    """
    now = asyncio.get_running_loop().time
    deadline = now() + delay
    # Probe once at once: a peer that refuses TCP right after our failure was down (its
    # return is the signal); one that accepts it refused us at the protocol level, and
    # the backoff runs its course.
    was_down = peer_was_down or not await reachable()
    while (left := deadline - now()) > 0:
        await asyncio.sleep(min(left, rng.uniform(probe_interval / 2, probe_interval)))
        if now() >= deadline:
            return False
        if not await reachable():
            was_down = True
        elif was_down:
            pause = rng.uniform(0.0, spread)
            log.info("broker reachable again; reconnecting in %.2f s", pause)
            await asyncio.sleep(pause)
            return True
    return False
