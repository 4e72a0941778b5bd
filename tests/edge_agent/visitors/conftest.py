"""Fixtures for the visitors tests: a real ledger file, a config, a settable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import Config
from edge_agent.config_load import parse_config
from edge_agent.ledger import Ledger
from edge_agent.services import AgentServices


class Clock:
    """A settable clock for the engine (``clock()`` returns ``now``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# Wednesday 2026-11-25 10:00:00 UTC (a quarter-hour boundary).
T0 = 1795600800.0


def door_device(name: str = "door-1", port: str = "/dev/null") -> dict[str, Any]:
    return {"kind": "door_counter", "name": name, "port": port, "role": "door",
            "zone": "entrance"}


def rfid_device(name: str = "rfid-1", port: str = "/dev/null") -> dict[str, Any]:
    return {"kind": "em4100", "name": name, "port": port, "role": "presence",
            "zone": "entrance", "gone_after_s": 0.5}


def make_config(tmp_path: Path, devices: list[dict[str, Any]] | None = None,
                **visitors: Any) -> Config:
    raw: dict[str, Any] = {
        "store": {"id": "S001", "timezone": "Europe/Berlin",
                  "opening_hours": ["08:00", "20:00"]},
        "database": {"path": str(tmp_path / "ledger.db"), "min_free_bytes": 1000},
        "devices": devices if devices is not None else [door_device(), rfid_device()],
        "visitors": visitors,
    }
    return parse_config(raw, tmp_path / "config.toml")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def open_services(tmp_path: Path) -> Iterator[Callable[..., AgentServices]]:
    """``open_services(devices=None, **visitors)`` -> services on a real ledger file."""
    ledgers: list[Ledger] = []

    def factory(devices: list[dict[str, Any]] | None = None, **visitors: Any) -> AgentServices:
        config = make_config(tmp_path, devices, **visitors)
        ledger = Ledger.open(config.database.path, config.store.id)
        ledgers.append(ledger)
        return AgentServices(config=config, ledger=ledger)

    yield factory
    for ledger in ledgers:
        ledger.close()


def insert_sale(tx: Any, sale_id: str, ts: str) -> None:
    """A row in the retail ``sales`` table (owned by another package, whose columns may
    grow): the report only reads ``ts``, so every other required column gets a filler."""
    columns = tx.query("PRAGMA table_info(sales)")
    names, values = [], []
    for col in columns:
        name, decl, notnull, default = str(col[1]), str(col[2]).upper(), col[3], col[4]
        if name == "sale_id":
            value: Any = sale_id
        elif name == "ts":
            value = ts
        elif notnull and default is None:
            value = 1 if "INT" in decl else ("[]" if name in {"lines", "payments"} else "x")
        else:
            continue
        names.append(name)
        values.append(value)
    tx.execute(f"INSERT INTO sales ({', '.join(names)}) VALUES "
               f"({', '.join('?' for _ in names)})", values)
