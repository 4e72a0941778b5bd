"""``edge-agent orders``: the queue from the real daemon API over its socket, and from the
database read-only when the daemon is down."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.ledger import Ledger
from tests.edge_agent.api.conftest import running_api
from tests.edge_agent.cli.conftest import as_json, db_path, invoke, write_config
from tests.edge_agent.orders.helpers import assign, stock_in
from tests.edge_agent.retail.seed import open_ledger

REPO = Path(__file__).resolve().parents[3]


def test_orders_from_the_database(config_path: Path, tmp_path: Path) -> None:
    path = db_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger.open(path, "S001") as ledger:
        assign(ledger, "W1", {"A-100": 2})
        assign(ledger, "W2", {"B-200": 1}, fulfilment="ship")
    listed = invoke(config_path, "orders", "--json")
    assert listed.exit_code == 0, listed.output
    data = as_json(listed)
    assert [o["order_id"] for o in data["orders"]] == ["W1", "W2"]
    assert "daemon not running" in listed.stderr
    shown = as_json(invoke(config_path, "orders", "show", "W2", "--json"))
    assert (shown["status"], shown["fulfilment"]) == ("incoming", "ship")
    text = invoke(config_path, "orders")
    assert text.exit_code == 0
    assert "W1" in text.stdout
    assert "0/2" in text.stdout
    table = invoke(config_path, "orders", "show", "W1")
    assert "history" in table.stdout
    missing = invoke(config_path, "orders", "show", "nope")
    assert missing.exit_code == 1
    assert "no order nope" in missing.stderr
    none = as_json(invoke(config_path, "orders", "--status", "collected", "--json"))
    assert none["count"] == 0


def test_orders_before_any_order_or_migration(config_path: Path, tmp_path: Path) -> None:
    """An empty queue, not a database error, on a fresh database."""
    path = db_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Ledger.open(path, "S001").close()
    assert as_json(invoke(config_path, "orders", "--json"))["count"] == 0


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ea-cli-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "--config", str(config), *args],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


async def test_orders_from_the_running_daemon(short_dir: Path) -> None:
    open_ledger(short_dir / "ledger.db").close()  # seeded catalog
    async with running_api(short_dir) as api:
        stock_in(api.ledger, {"A-100": 3})
        assign(api.ledger, "W1", {"A-100": 2})
        r = await api.client.post("/v1/orders/W1/accept", json={"by": "ann"},
                                  headers={"Idempotency-Key": "k1"})
        assert r.status_code == 201
        (short_dir / "cli").mkdir()
        config = write_config(short_dir / "cli")
        text = config.read_text().replace(str(short_dir / "cli" / "api.sock"),
                                          str(api.socket))
        config.write_text(text)
        listed = await asyncio.to_thread(_cli, config, "orders", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "daemon not running" not in listed.stderr
        [order] = json.loads(listed.stdout)["orders"]
        assert (order["order_id"], order["status"]) == ("W1", "accepted")
        missing = await asyncio.to_thread(_cli, config, "orders", "show", "nope")
        assert missing.returncode == 1
        assert "order_not_found" in missing.stderr
