"""The rough edges a newcomer hit with the CLI (issue 17), each pinned by a test."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edge_agent.cli import cli
from tests.edge_agent.cli.conftest import as_json, db_path, seed, write_config
from tests.edge_agent.cli.test_cli import ROOT, command_paths

BAD = """
[store]
id = "S1"
currency = "euro"
[mqtt]
url = "http://x"
password = "inline-SECRET"
keepalive_s = -3
[[devices]]
name = "t"
kind = "serial_scanner"
port = "/dev/null"
suffix = "NUL"
"""


def test_config_after_the_command_as_the_readme_shows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    for argv in (["config", "check", "--config", str(bad)],
                 ["--config", str(bad), "config", "check"],
                 ["config", "--config", str(bad), "check"]):
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        assert result.exit_code == 2, (argv, result.output)
        assert "5 problem(s)" in result.stderr, argv


def test_every_command_takes_config_and_json_after_its_name() -> None:
    for path, command in command_paths(cli):
        opts = {opt for param in command.params for opt in param.opts}
        assert "--config" in opts, f"{path} lacks --config"
        if not hasattr(command, "commands"):
            assert "--json" in opts, f"{path} lacks --json"


def test_command_config_wins_over_the_global_one(tmp_path: Path) -> None:
    good = write_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    result = CliRunner().invoke(cli, ["--config", str(bad), "config", "check", "--config",
                                      str(good)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_config_check_shows_every_error_beside_an_inline_secret(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    machine = CliRunner().invoke(cli, ["config", "check", "--json", "--config", str(bad)])
    problems = as_json(machine)["problems"]
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["devices[0].suffix", "mqtt.keepalive_s", "mqtt.password", "mqtt.url",
                    "store.currency"]
    assert "inline-SECRET" not in machine.output


def test_config_hints_are_not_circular(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    check = CliRunner().invoke(cli, ["config", "check", "--config", str(bad)])
    assert "hint:" in check.stderr
    assert "`edge-agent config check`" not in check.stderr
    status = CliRunner().invoke(cli, ["status", "--config", str(bad)])
    assert status.exit_code == 2
    assert "mqtt.url" in status.stderr  # the problems themselves, not only a pointer


def test_seeded_fixture_still_reads(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    seed(db_path(tmp_path))
    result = CliRunner().invoke(cli, ["status", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert as_json(result)["store"] == "S001"


def test_db_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    seed(db_path(tmp_path))
    target = tmp_path / "backup.db"
    target.write_bytes(b"an older backup")
    refused = CliRunner().invoke(cli, ["db", "backup", str(target), "--config", str(config)])
    assert refused.exit_code == 1
    assert "already exists" in refused.stderr
    assert "--force" in refused.stderr
    assert target.read_bytes() == b"an older backup"
    forced = CliRunner().invoke(cli, ["db", "backup", str(target), "--force", "--json",
                                      "--config", str(config)])
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes().startswith(b"SQLite format 3")


def test_simulate_names_itself_and_takes_json(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "edge_agent", "simulate", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert helped.stdout.startswith("usage: edge-agent simulate"), helped.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "simulate", "--json", "--dir",
         str(tmp_path / "sim"), "--no-demo"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        data = json.loads(first)
        assert any(d["name"] == "till-1" for d in data["devices"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
