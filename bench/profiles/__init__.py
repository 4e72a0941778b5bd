"""Profiles of issue 18's missed targets, written as small text files to ``docs/profiles/``.

Run: ``.venv/bin/python -m bench.profiles [memory] [start] [durable] [api] [drain]``
(all when none is named). Each file starts with the command, the date, the load average
and the machine, then what bounds the figure. This package holds only the shared header
and writer; one module per profile.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.agentproc import agent_config
from bench.common import machine, machine_line, running_broker
from bench.footprint import start_demo_devices
from drivers.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "profiles"
STDLIB = sysconfig.get_paths()["stdlib"]


def short(path: str) -> str:
    """A source path without this machine's prefixes: ``pkg/mod.py``, ``<stdlib>/mod.py``."""
    if "site-packages/" in path:
        return path.rsplit("site-packages/", maxsplit=1)[-1]
    if path.startswith(str(ROOT) + "/"):
        return path[len(str(ROOT)) + 1:]
    if path.startswith(STDLIB + "/"):
        return "<stdlib>/" + path[len(STDLIB) + 1:]
    return path


def write_profile(name: str, title: str, body: list[str]) -> Path:
    """``docs/profiles/<name>.txt``: a header (command, date, load, machine), then ``body``."""
    head = [
        title,
        "=" * len(title),
        f"command: .venv/bin/python -m bench.profiles {name}",
        f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"load:    {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)",
        f"machine: {machine_line(machine())}",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    path = DOCS / f"{name}.txt"
    path.write_text("\n".join(head + body).rstrip() + "\n")
    print(path.read_text(), file=sys.stderr)
    return path


@asynccontextmanager
async def demo_store(work: Path) -> AsyncIterator[Path]:
    """The demo devices on simulator ptys and a broker; yields the agent's config file."""
    async with Simulator(work / "dev") as sim:
        await start_demo_devices(sim)
        with running_broker(work / "broker") as broker:
            yield agent_config(work, work / "ledger.db", broker.url, sim)
