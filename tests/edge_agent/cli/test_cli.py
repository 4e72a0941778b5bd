"""The edge-agent CLI: help and docs, config, init, database fallback, daemon commands, db."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from edge_agent.cli import cli
from edge_agent.ledger import Ledger, read_epochs
from edge_agent.ledger.schema import connect
from tests.edge_agent.cli.conftest import (
    CENTRAL_SECRET,
    MQTT_SECRET,
    STORE,
    FakeDaemon,
    as_json,
    db_path,
    invoke,
    sale,
    seed,
    write_config,
)

ROOT = Path(__file__).resolve().parents[3]


def command_paths(group: click.Group, prefix: str = "edge-agent"
                  ) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)  # the group loads command modules when asked (lazy)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        out.append((path, command))
        if isinstance(command, click.Group):
            out.extend(command_paths(command, path))
    return out


# -- help and documentation -----------------------------------------------------------------
def test_every_command_has_help_and_json() -> None:
    paths = command_paths(cli)
    assert len(paths) >= 25
    for path, command in paths:
        assert (command.help or "").strip(), f"{path} has no help text"
        if isinstance(command, click.Group) or path.endswith("simulate"):
            continue
        assert any("--json" in p.opts for p in command.params), f"{path} has no --json"


def _documented(text: str, path: str) -> bool:
    return re.search(rf"`{re.escape(path)}(`|\s|\[)", text) is not None


def test_every_command_is_in_docs_cli_md() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [p for p, _ in command_paths(cli) if not _documented(text, p)]
    assert not missing, f"docs/cli.md lacks {missing}"
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^\| *{code} *\|", text, re.M), f"exit code {code} undocumented"


def test_every_command_is_in_the_readme_cli_reference() -> None:
    readme = (ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else ""
    match = re.search(r"^#+ .*CLI reference.*$", readme, re.M | re.I)
    if match is None:
        pytest.skip("README.md has no 'CLI reference' heading yet (the lead pastes docs/cli.md)")
    section = readme[match.start():]
    missing = [p for p, _ in command_paths(cli) if not _documented(section, p)]
    assert not missing, f"README CLI reference lacks {missing}"


# -- config ----------------------------------------------------------------------------------
def test_config_show_never_prints_a_secret(config_path: Path) -> None:
    human = invoke(config_path, "config", "show")
    machine = invoke(config_path, "config", "show", "--json")
    for result in (human, machine):
        assert result.exit_code == 0, result.output
        assert MQTT_SECRET not in result.output
        assert CENTRAL_SECRET not in result.output
    data = as_json(machine)
    redacted = "set (redacted)"
    assert data["mqtt"]["secret"] == redacted
    assert data["central"]["secret"] == redacted
    assert data["store"]["id"] == STORE
    assert "set (redacted)" in human.output


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nid = "no spaces allowed"\n[mqtt]\nurl = "http://x"\n'
                   'password = "inline"\n')
    result = invoke(bad, "config", "check")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "store.id" in result.stderr
    assert "mqtt" in result.stderr
    assert "inline" not in result.stderr  # the inline secret is not echoed back
    machine = invoke(bad, "config", "check", "--json")
    assert machine.exit_code == 2
    assert len(as_json(machine)["problems"]) >= 2
    missing = invoke(tmp_path / "nope.toml", "status")
    assert missing.exit_code == 2
    assert "edge-agent init" in missing.stderr


def test_config_check_ok(config_path: Path) -> None:
    result = invoke(config_path, "config", "check")
    assert result.exit_code == 0
    assert "valid" in result.stdout


# -- init ------------------------------------------------------------------------------------
def test_init_writes_config_and_database(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "config.toml"
    db = tmp_path / "state" / "ledger.db"
    result = invoke(target, "init", "--store-id", "S042", "--mqtt-url", "mqtts://m.example:8883",
                    "--central-url", "https://c.example", "--db-path", str(db),
                    "--socket", str(tmp_path / "api.sock"), "--json")
    assert result.exit_code == 0, result.output
    out = as_json(result)
    assert out["created_db"] is True
    raw = tomllib.loads(target.read_text())
    assert raw["store"]["id"] == "S042"
    assert raw["mqtt"]["url"] == "mqtts://m.example:8883"
    assert raw["central"]["url"] == "https://c.example"
    assert "devices" not in raw  # the example's devices belong to another store
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    conn = connect(db, readonly=True)
    try:
        assert [e.epoch for e in read_epochs(conn)] == [out["epoch"]]
        assert conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0] == "S042"
    finally:
        conn.close()
    assert invoke(target, "config", "check").exit_code == 0

    again = invoke(target, "init", "--store-id", "S043", "--db-path", str(db))
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert tomllib.loads(target.read_text())["store"]["id"] == "S042"


def test_init_refuses_an_invalid_store_id(tmp_path: Path) -> None:
    target = tmp_path / "c.toml"
    result = invoke(target, "init", "--store-id", "bad id!", "--db-path",
                    str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert not target.exists()


# -- read-only commands without a daemon ----------------------------------------------------
NOTE = "daemon not running — read from the database"


def test_status_reads_the_database_when_no_daemon(config_path: Path, seeded: str) -> None:
    result = invoke(config_path, "status", "--json")
    assert result.exit_code == 0, result.output
    assert NOTE in result.stderr
    data = as_json(result)
    assert data["source"] == "database"
    assert data["store"] == STORE
    assert data["epoch"] == seeded
    assert data["last_seq"] == 4
    assert data["outbox"]["pending"] == 3
    assert data["broker"]["connected"] is False
    human = invoke(config_path, "status")
    assert human.exit_code == 0
    assert "NOT connected" in human.stdout
    assert seeded in human.stdout


def test_outbox_lists_pending_events_from_the_database(config_path: Path, seeded: str) -> None:
    result = invoke(config_path, "outbox", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert data["pending"] == 3
    assert [(i["seq"], i["type"]) for i in data["items"]] == [(2, "receipt"), (3, "sale")]
    assert data["oldest_age_s"] is not None


def test_stock_and_low_stock_from_the_database(config_path: Path, seeded: str) -> None:
    one = invoke(config_path, "stock", "A-1", "--json")
    assert one.exit_code == 0, one.output
    assert as_json(one) == {"sku": "A-1", "in_catalog": True, "name": "Blue mug",
                            "price": "12.90", "currency": "EUR", "on_hand": 8, "reserved": 0,
                            "available": 8}
    low = invoke(config_path, "stock", "low", "--json")
    assert [i["sku"] for i in as_json(low)["items"]] == ["B-2"]
    unknown = invoke(config_path, "stock", "Z-9", "--json")
    assert unknown.exit_code == 1
    assert "no catalog item or stock for SKU 'Z-9'" in unknown.stderr


def test_sales_today_from_the_database(config_path: Path, seeded: str) -> None:
    result = invoke(config_path, "sales", "--today", "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert data["date"] == datetime.now(UTC).date().isoformat()
    assert data["sales"] == 2
    assert data["total"] == "30.30"
    assert data["units"] == 3
    assert data["by_terminal"] == {"T1": {"sales": 1, "total": "25.80"},
                                   "T2": {"sales": 1, "total": "4.50"}}
    other = invoke(config_path, "sales", "--date", "2001-01-01", "--json")
    assert as_json(other)["sales"] == 0


def test_read_commands_never_write_the_database(config_path: Path, seeded: str,
                                                tmp_path: Path) -> None:
    db = db_path(tmp_path)
    before = db.read_bytes()
    for args in (["status"], ["outbox"], ["stock", "A-1"], ["sales", "--today"]):
        assert invoke(config_path, *args).exit_code == 0
    assert db.read_bytes() == before


def test_commands_needing_the_daemon_exit_3(config_path: Path, seeded: str) -> None:
    for args in (["sync", "now"], ["sync", "resync"], ["sync", "watch"], ["devices", "tail"]):
        result = invoke(config_path, *args)
        assert result.exit_code == 3, (args, result.output)
        assert "daemon not running" in result.stderr
        assert "hint:" in result.stderr


# -- with the daemon ---------------------------------------------------------------------------
STATUS = {
    "state": "running", "version": "0.1.0", "store": STORE, "uptime_s": 3725,
    "boot_id": "b-1", "epoch": "e-1", "last_seq": 57, "applied_cseq": 7,
    "resync_needed": False,
    "broker": {"connected": True, "last_ack_at": "2026-11-25T09:15:02.123Z", "reconnects": 2},
    "outbox": {"pending": 4, "oldest_ts": "2026-11-25T09:15:00.000Z", "oldest_age_s": 12},
    "devices": {"connected": 1, "total": 2, "items": [
        {"name": "till-1", "kind": "serial_scanner", "port": "/dev/x", "state": "connected",
         "since": 1764000000.0, "detail": "", "reads": 5, "frames_rejected": 0,
         "reconnects": 0}]},
    "clock_offset_ms": -40,
    "db": {"bytes": 1, "wal_bytes": 2, "disk_free_bytes": 3},
    "counters": {},
}


def test_status_from_the_daemon(config_path: Path, fake_daemon: FakeDaemon) -> None:
    fake_daemon.json("GET", "/v1/status", STATUS)
    result = invoke(config_path, "status", "--json")
    assert result.exit_code == 0, result.output
    assert as_json(result)["source"] == "daemon"
    assert NOTE not in result.stderr
    human = invoke(config_path, "status")
    assert "1 h 2 min" in human.stdout
    assert "-40 ms" in human.stdout
    assert "till-1" in human.stdout


def test_sync_now_resync_and_api_errors(config_path: Path, fake_daemon: FakeDaemon) -> None:
    fake_daemon.json("POST", "/v1/sync/now", {"requested": True})
    fake_daemon.json("POST", "/v1/sync/resync",
                     {"code": "resync_running", "message": "a resync is already running"},
                     status=409)
    ok = invoke(config_path, "sync", "now", "--json")
    assert ok.exit_code == 0
    assert as_json(ok) == {"requested": True}
    refused = invoke(config_path, "sync", "resync")
    assert refused.exit_code == 1
    assert "a resync is already running" in refused.stderr
    assert ("POST", "/v1/sync/now", {}) in fake_daemon.requests


def test_devices_tail_masks_card_data(config_path: Path, fake_daemon: FakeDaemon) -> None:
    card = "4111111111111111"
    fake_daemon.streams["stream"] = [
        ("scan", {"device": "till-1", "code": "4006381333931"}),
        ("scan", {"device": "till-2", "code": "12345678"}),
        ("scan", {"device": "till-1", "code": card}),
        ("tag", {"device": "till-1", "detail": f"track ;{card}=2512?"}),
    ]
    cfg = write_config(config_path.parent, devices=(
        '[[devices]]\nname = "till-1"\nkind = "serial_scanner"\nport = "/dev/null"\n'
        '[[devices]]\nname = "till-2"\nkind = "serial_scanner"\nport = "/dev/null"\n'))
    result = invoke(cfg, "devices", "tail", "till-1", "--duration", "2")
    assert result.exit_code == 0, result.output
    assert "4006381333931" in result.stdout
    assert "12345678" not in result.stdout
    assert card not in result.stdout
    assert "card data masked …1111" in result.stdout
    machine = invoke(cfg, "devices", "tail", "--json", "--duration", "2")
    assert card not in machine.stdout
    assert "12345678" in machine.stdout


def test_sync_watch_prints_changes(config_path: Path, fake_daemon: FakeDaemon) -> None:
    answers = [dict(STATUS), dict(STATUS), {**STATUS, "applied_cseq": 8, "last_seq": 58}]

    def status(_q: object, _b: object) -> tuple[int, object]:
        return 200, answers.pop(0) if len(answers) > 1 else answers[0]

    fake_daemon.routes[("GET", "/v1/status")] = status
    result = invoke(config_path, "sync", "watch", "--interval", "0.1", "--duration", "0.6",
                    "--json")
    assert result.exit_code == 0, result.output
    changes = [json.loads(line) for line in result.stdout.splitlines()
               if line.strip()]  # one JSON object per line
    assert changes[0]["data"]["applied_cseq"] == 7
    assert changes[0]["data"]["last_ack_at"] == "2026-11-25T09:15:02.123Z"
    assert changes[1]["data"] == {"applied_cseq": 8, "last_seq": 58}
    assert len(changes) == 2


# -- db ------------------------------------------------------------------------------------------
def test_db_check_backup_restore_via_cli(config_path: Path, seeded: str, tmp_path: Path) -> None:
    check = invoke(config_path, "db", "check", "--json")
    assert check.exit_code == 0, check.output
    assert as_json(check)["ok"] is True
    backup = tmp_path / "backup.db"
    made = invoke(config_path, "db", "backup", str(backup), "--json")
    assert made.exit_code == 0, made.output
    assert as_json(made)["last_seq"] == 4
    with Ledger.open(db_path(tmp_path), STORE) as ledger:  # the daemon runs
        ledger.write_blocking(sale("A-1", 1, "12.90"))
        refused = invoke(config_path, "db", "restore", str(backup), "--yes")
        assert refused.exit_code == 1
        assert "stop it first" in refused.stderr
        vacuum = invoke(config_path, "db", "vacuum")
        assert vacuum.exit_code == 1
        test = invoke(config_path, "status", "--json")  # reads while the daemon holds it
        assert "the agent holds the database" in test.stderr
    aborted = invoke(config_path, "db", "restore", str(backup), input_text="n\n")
    assert aborted.exit_code == 1
    restored = invoke(config_path, "db", "restore", str(backup), "--json")
    assert restored.exit_code == 0, restored.output
    out = as_json(restored)
    assert out["previous"].endswith("ledger.db.pre-restore")
    status = as_json(invoke(config_path, "status", "--json"))
    assert status["epoch"] == out["new_epoch"] != seeded
    assert status["resync_needed"] is True
    assert status["outbox"]["pending"] == 3  # the backup's unacked events, old epoch


def test_db_check_exit_4_on_damage(config_path: Path, seeded: str, tmp_path: Path) -> None:
    db = db_path(tmp_path)
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)
    db.write_bytes(bytes(data))
    result = invoke(config_path, "db", "check")
    assert result.exit_code == 4
    assert "FAILED" in result.stdout


# -- a real process --------------------------------------------------------------------------
def test_python_m_edge_agent_subprocess(config_path: Path, seeded: str, tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(config_path)}
    proc = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--json"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["last_seq"] == 4
    assert NOTE in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "edge_agent", "--config",
                          str(tmp_path / "missing.toml"), "outbox"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "edge_agent", "no-such-command"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert usage.returncode == 2


def test_seed_helper_is_gapless(tmp_path: Path) -> None:
    epoch = seed(tmp_path / "x.db")
    conn = connect(tmp_path / "x.db", readonly=True)
    try:
        assert [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY id")] == [1, 2, 3, 4]
        assert read_epochs(conn)[0].epoch == epoch
    finally:
        conn.close()


def test_simulate_wraps_the_drivers_simulator(tmp_path: Path) -> None:
    out = tmp_path / "devices.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "simulate", "--dir", str(tmp_path / "sim"),
         "--config-out", str(out), "--no-demo"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert out.exists(), proc.stderr.read().decode() if proc.poll() is not None else ""
        devices = tomllib.loads(out.read_text())["devices"]
        till = next(d for d in devices if d["name"] == "till-1")
        assert Path(till["port"]).exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_visitors_today_from_the_database(config_path: Path, seeded: str,
                                          tmp_path: Path) -> None:
    with Ledger.open(db_path(tmp_path), STORE) as ledger:
        ledger.write_blocking(lambda tx: tx.execute(
            "INSERT INTO footfall (door, period_start, period_s, entries, exits) "
            "VALUES ('door-1', ?, 900, 7, 5)", (int(time.time()) // 900 * 900,)))
    result = invoke(config_path, "visitors", "--today", "--json")
    assert result.exit_code == 0, result.output
    assert NOTE in result.stderr
    data = as_json(result)
    assert data["entries"] == 7
    assert data["exits"] == 5
    assert data["visits"] == 0
    human = invoke(config_path, "visitors")
    assert human.exit_code == 0
    assert "entries" in human.stdout
