"""Fixtures shared by the whole suite (owned by the lead)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mosquitto import Broker, running_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh mosquitto on a free loopback port, stopped by PID at the end."""
    with running_broker(tmp_path / "broker") as running:
        yield running


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
