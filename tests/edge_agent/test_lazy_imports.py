"""The daemon's start path imports only what start-up needs (issue 18: footprint).

Each heavy library below is imported on first use instead (a scan, a phone number, a
resync); a fresh interpreter shows what ``edge-agent run`` loads before its first event.
"""

from __future__ import annotations

import json
import subprocess
import sys

# library -> what loads it when it is needed
LAZY = {
    "biip": "the first code read (drivers.barcode)",
    "phonenumbers": "the first phone number (sync.customer_ids)",
    "httpx": "the first snapshot fetch (sync.snapshot)",
    "pygal": "the first chart drawn for the store page (edge_agent.web.charts)",
}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_daemon_path_leaves_heavy_libraries_for_later() -> None:
    loaded = _modules_after("import edge_agent.cli, edge_agent.daemon")
    assert "edge_agent.daemon" in loaded
    early = {name: why for name, why in LAZY.items() if name in loaded}
    assert early == {}, f"imported at start, should wait for: {early}"


def test_a_scan_loads_biip_and_reads_the_code() -> None:
    loaded = _modules_after(
        "from drivers.barcode import interpret\n"
        "assert interpret('2302120012344', 'se').kind == 'variable_weight'")
    assert "biip" in loaded


def test_a_store_region_is_checked_without_biip() -> None:
    loaded = _modules_after(
        "from edge_agent.config import StoreSection\n"
        "from edge_agent.retail.till import TillRules\n"
        "rules = TillRules.from_store(StoreSection(id='S1', rcn_region='SWEDEN'))\n"
        "assert rules.region == 'se'")
    assert "biip" not in loaded


def test_the_collector_is_back_on_once_the_daemon_is_ready() -> None:
    """`edge-agent run` imports with the collector off; READY turns it back on."""
    loaded = _modules_after(
        "import gc\n"
        "gc.disable()\n"
        "from edge_agent.daemon import release_startup_garbage\n"
        "release_startup_garbage()\n"
        "assert gc.isenabled()")
    assert "edge_agent.daemon" in loaded


def test_the_cli_imports_with_the_collector_off_and_leaves_it_on() -> None:
    loaded = _modules_after("import gc, edge_agent.cli\nassert gc.isenabled()")
    assert "edge_agent.cli" in loaded


def test_edge_agent_run_imports_no_other_command() -> None:
    """`edge-agent run` parses its options without loading the other commands' modules
    (doctor, db, devices...); any other command, or --help, loads them."""
    loaded = _modules_after(
        "import sys\n"
        "from edge_agent.cli import cli\n"
        "cmd = cli.get_command(None, 'run')\n"
        "assert cmd is not None and cmd.name == 'run'")
    assert "edge_agent.cli.cmd_run" in loaded
    others = {m for m in loaded if m.startswith(("edge_agent.cli.cmd_", "edge_agent.doctor"))}
    assert others == {"edge_agent.cli.cmd_run"}
    loaded = _modules_after(
        "from edge_agent.cli import cli\n"
        "assert cli.get_command(None, 'doctor') is not None")
    assert "edge_agent.doctor" in loaded
