"""``edge-agent rfid …`` against the agent's real API app (with the RFID engine) on a
real Unix socket, and ``rfid accuracy`` from the database when the daemon is down."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from edge_agent.cli.app import cli  # noqa: F401 - registers the commands
from tests.edge_agent.cli.conftest import invoke
from tests.edge_agent.rfid.conftest import GTINS, SKUS, epc_hex, serving
from tests.edge_agent.rfid.conftest import make_rig as make_rig  # noqa: PLC0414 - fixture
from tests.edge_agent.rfid.conftest import short_dir as short_dir  # noqa: PLC0414 - fixture


def out_json(text: str) -> Any:
    """The JSON the command printed (the in-process engine's log lines may precede it)."""
    return json.loads(text[text.index("{"):] if text.startswith("{") else
                      text[text.index("\n{") + 1:])


def toml_for(rig: Any, directory: Path) -> Path:
    config = rig.services.config
    path = directory / "cli.toml"
    path.write_text(f'[store]\nid = "S001"\ncurrency = "EUR"\n\n[database]\n'
                    f'path = "{config.database.path}"\n\n[api]\nsocket = "{config.api.socket}"\n')
    return path


async def test_count_walkthrough(make_rig: Any, short_dir: Path) -> None:
    rig = await make_rig()
    config = toml_for(rig, short_dir)
    async with serving(rig):
        result = await asyncio.to_thread(invoke, config, "--json", "rfid", "count", "open",
                                         "--zone", "floor", "--id", "cli-1")
        assert result.exit_code == 0, result.output
        assert out_json(result.stdout)["zones"] == ["floor"]
        rig.tag("floor-1", epc_hex(GTINS[2], 1))
        rig.tag("floor-1", epc_hex(GTINS[2], 2))
        shown = await asyncio.to_thread(invoke, config, "rfid", "count", "show", "cli-1")
        assert "distinct tags" in shown.stdout
        assert GTINS[2] in shown.stdout
        closed = await asyncio.to_thread(invoke, config, "rfid", "count", "close", "cli-1")
        assert closed.exit_code == 0, closed.output
        assert SKUS[2] in closed.stdout
        assert "+2" in closed.stdout
        listed = await asyncio.to_thread(invoke, config, "--json", "rfid", "count", "list")
        assert out_json(listed.stdout)["counts"][0]["status"] == "closed"
        bad = await asyncio.to_thread(invoke, config, "rfid", "count", "open", "--zone",
                                      "attic")
        assert bad.exit_code == 1
        assert "attic" in bad.stderr
    # The daemon is gone: accuracy is read from the database.
    offline = await asyncio.to_thread(invoke, config, "--json", "rfid", "accuracy")
    assert offline.exit_code == 0, offline.output
    rows = out_json(offline.stdout)["skus"]
    assert [(r["sku"], r["counted"], r["variance"]) for r in rows] == [(SKUS[2], 2, 2)]
