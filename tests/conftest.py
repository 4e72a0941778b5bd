"""Fixtures shared by the whole suite (owned by the lead)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.helpers.lingering import TrackingLoop, lingering
from tests.helpers.mosquitto import Broker, running_broker


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Loops that keep track of their timers (see :mod:`tests.helpers.lingering`)."""
    return {"tracking": TrackingLoop}


@pytest.fixture(autouse=True)
async def no_lingering_tasks_or_timers(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks or timers behind (aioesphomeapi's lesson): a
    leftover task hides a missing cancel or await, and it would run into the next test.
    Mark a test ``@pytest.mark.lingering_ok`` only with a reason written beside it."""
    before = asyncio.all_tasks()
    yield
    if request.node.get_closest_marker("lingering_ok") is not None:
        return
    tasks, timers = await lingering(before)
    for task in tasks:
        task.cancel()
    if tasks or timers:
        pytest.fail(f"left behind: tasks {[t.get_name() for t in tasks]} "
                    f"{[repr(t.get_coro()) for t in tasks][:3]}, timers {timers[:5]}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh mosquitto on a free loopback port, stopped by PID at the end."""
    with running_broker(tmp_path / "broker") as running:
        yield running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lingering_ok: this test may leave asyncio tasks or timers (say why)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help="run the long chaos runs (>= 10,000 facts, >= 200 agent kills)",
    )
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the store-week soak (tests/soak, marker soak; about 10 minutes)",
    )
