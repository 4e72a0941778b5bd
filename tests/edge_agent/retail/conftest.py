from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger
from edge_agent.retail import RetailService
from tests.edge_agent.retail.seed import STORE, open_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(tmp_path / "ledger.db")
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


@pytest.fixture
def retail(ledger: Ledger, hub: EventHub) -> RetailService:
    return RetailService(ledger, STORE, hub=hub)
