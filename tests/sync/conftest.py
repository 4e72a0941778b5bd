"""Fixtures for the store-side sync tests. The test central peer is
:mod:`tests.helpers.peer_central`; a running store is :mod:`tests.helpers.running_store`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store_db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "ledger.db"
