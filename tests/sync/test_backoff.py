"""The wait before a reconnect: cut short by a real TCP listener coming back, never by one
that never went away (that would turn the backoff into a tight loop)."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from sync.backoff import Backoff, probe_interval, wait_to_reconnect
from sync.errors import LinkError
from sync.link import Link, LinkConfig
from tests.helpers.ports import free_port


def _link(port: int) -> Link:
    return Link(LinkConfig(url=f"mqtt://127.0.0.1:{port}", client_id="t"))


async def test_a_peer_that_comes_back_cuts_the_wait_short() -> None:
    port = free_port()
    link = _link(port)
    probes: list[bool] = []
    probed = asyncio.Event()

    async def reachable() -> bool:
        ok = await link.reachable(within=2.0)
        probes.append(ok)
        probed.set()
        return ok

    waiting = asyncio.create_task(wait_to_reconnect(
        3600.0, reachable, probe_interval=0.2, spread=0.1, rng=random.Random(1)))
    # progress, not a clock: wait until the probe has seen the peer down at least once
    await asyncio.wait_for(probed.wait(), 120)
    assert probes[0] is False
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        # an hour's backoff, ended by the reachability signal
        assert await asyncio.wait_for(waiting, 120) is True
    finally:
        server.close()
        await server.wait_closed()
    assert probes[-1] is True


class _Listening:
    """A TCP listener on a loopback port (a peer that is up), and a probe counting its calls."""

    def __enter__(self) -> _Listening:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.link = _link(self.sock.getsockname()[1])
        self.probes = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    async def reachable(self) -> bool:
        self.probes += 1
        return await self.link.reachable(within=2.0)


async def test_a_peer_that_never_went_away_does_not_end_the_backoff() -> None:
    with _Listening() as peer:
        # Always reachable: the wait runs its whole (short) course.
        assert await wait_to_reconnect(
            1.0, peer.reachable, probe_interval=0.2, spread=0.0, rng=random.Random(2)) is False
    assert peer.probes >= 1


def test_backoff_is_full_jitter_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert backoff.attempt == 10
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


def test_the_probe_slows_down_only_after_a_long_outage() -> None:
    """First minutes: the base interval (a returning broker noticed within ~1 s); then it
    doubles with each further fast_for seconds, never past the cap, never below base."""
    def interval(outage: float) -> float:
        return probe_interval(outage, 1.0, fast_for=300.0, cap=15.0)

    assert [interval(t) for t in (0.0, 60.0, 299.0, 300.0)] == [1.0] * 4
    assert interval(600.0) == 2.0
    assert interval(900.0) == 4.0
    grown = [interval(t) for t in range(300, 4000, 50)]
    assert grown == sorted(grown)
    assert interval(3600.0) == interval(86_400.0) == 15.0
    assert probe_interval(10_000.0, 20.0, fast_for=300.0, cap=15.0) == 20.0


async def test_a_refused_connect_means_the_peer_was_down_even_if_it_is_back_at_once() -> None:
    """The race the reconnect benchmark found: the broker returns between the refused
    connect and the first probe. Told that the connect was refused, the wait does not
    read the peer's answer as a protocol-level refusal: the hour's backoff ends at the
    first probe that reaches it."""
    with _Listening() as peer:
        assert await asyncio.wait_for(wait_to_reconnect(
            3600.0, peer.reachable, probe_interval=0.2, spread=0.0, rng=random.Random(4),
            peer_was_down=True), 120) is True
    assert peer.probes == 1  # no probe at once; the first timed probe ends the wait


async def test_a_closed_port_is_reported_unreachable_and_a_silent_one_is_not() -> None:
    """A refused TCP connect is a broker away (``unreachable``); a broker that accepts TCP
    and never answers the CONNECT refuses us at the protocol level."""
    port = free_port()
    with pytest.raises(LinkError) as refused:
        async with Link(LinkConfig(url=f"mqtt://127.0.0.1:{port}", client_id="t")).connect(
                will_topic="t/status", will_payload=b"{}"):
            pass
    assert refused.value.unreachable is True
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = LinkConfig(url=f"mqtt://127.0.0.1:{silent.getsockname()[1]}",
                            client_id="t", connect_timeout=0.5)
        with pytest.raises(LinkError) as stalled:
            async with Link(config).connect(will_topic="t/status", will_payload=b"{}"):
                pass
    assert stalled.value.unreachable is False
