"""``edge-agent devices test|list`` against a real pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cli.cmd_devices import mask
from edge_agent.ledger import Ledger
from tests.edge_agent.cli.conftest import STORE, FakeDaemon, as_json, db_path, invoke, write_config

CARD = "4111111111111111"


@pytest.fixture
def scanner_pty() -> Iterator[tuple[str, int]]:
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)  # like a real device: nobody holds it until a reader opens the path
    try:
        yield name, master
    finally:
        os.close(master)


def feed(master: int, stop: threading.Event) -> None:
    """A scanner that keeps scanning a GTIN, and once a card swipe, until stopped."""
    n = 0
    while not stop.wait(0.1):
        data = f"{CARD}\r".encode() if n == 3 else b"4006381333931\r"
        with contextlib.suppress(OSError):
            os.write(master, data)
        n += 1


def config_with(tmp_path: Path, port: str) -> Path:
    return write_config(tmp_path, devices=(
        f'[[devices]]\nname = "till-1"\nkind = "serial_scanner"\nport = "{port}"\n'
        'reconnect_initial_s = 0.05\nreconnect_max_s = 0.2\n'))


def test_devices_test_reads_frames(tmp_path: Path, scanner_pty: tuple[str, int]) -> None:
    port, master = scanner_pty
    config = config_with(tmp_path, port)
    stop = threading.Event()
    writer = threading.Thread(target=feed, args=(master, stop), daemon=True)
    writer.start()
    try:
        result = invoke(config, "devices", "test", "till-1", "--seconds", "1.5", "--json")
    finally:
        stop.set()
        writer.join(5)
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert data["ok"] is True
    assert data["state"] == "connected"
    assert data["reads"] >= 3
    assert data["events"]["ScanEvent"] >= 3
    assert data["card_data_rejected"] == 1
    assert CARD not in result.output


def test_devices_test_reports_a_missing_port(tmp_path: Path) -> None:
    config = config_with(tmp_path, str(tmp_path / "ttyUSB7"))
    result = invoke(config, "devices", "test", "till-1", "--seconds", "0.5")
    assert result.exit_code == 1
    assert "disconnected" in result.stdout or "error" in result.stdout
    assert "0 read(s)" in result.stdout


def test_devices_test_refused_while_the_agent_runs(tmp_path: Path,
                                                   scanner_pty: tuple[str, int]) -> None:
    port, _master = scanner_pty
    config = config_with(tmp_path, port)
    with Ledger.open(db_path(tmp_path), STORE):
        # this process is "the agent": it holds the database, and now the port too
        held = os.open(port, os.O_RDWR | os.O_NOCTTY)
        try:
            result = invoke(config, "devices", "test", "till-1", "--seconds", "0.5")
        finally:
            os.close(held)
        assert result.exit_code == 1
        assert f"(pid {os.getpid()}) holds till-1's port" in result.stderr
        assert "devices tail till-1" in result.stderr
        # the agent runs but does not hold this port (say it gave up on it): test it
        free = invoke(config, "devices", "test", "till-1", "--seconds", "0.5", "--json")
        assert "does not hold till-1's port" in free.stderr
        assert as_json(free)["state"] == "connected"
    unknown = invoke(config, "devices", "test", "nope")
    assert unknown.exit_code == 2
    assert "till-1" in unknown.stderr


def test_devices_list_without_and_with_the_daemon(
    tmp_path: Path, scanner_pty: tuple[str, int], fake_daemon: FakeDaemon
) -> None:
    port, _master = scanner_pty
    config = config_with(tmp_path, port)
    fake_daemon.socket_path.rename(tmp_path / "hidden.sock")  # the daemon is "down"
    offline = invoke(config, "devices", "list", "--json")
    assert offline.exit_code == 0, offline.output
    items = as_json(offline)["items"]
    assert [(i["name"], i["port"]) for i in items] == [("till-1", port)]
    assert items[0]["detail"].startswith("ok")
    assert as_json(offline)["source"] == "config"
    (tmp_path / "hidden.sock").rename(fake_daemon.socket_path)
    fake_daemon.json("GET", "/v1/devices", {"items": [
        {"name": "till-1", "kind": "serial_scanner", "port": port, "state": "connected",
         "since": 1764000000.0, "reads": 12, "frames_rejected": 1, "reconnects": 0,
         "detail": ""}]})
    live = invoke(config, "devices", "list")
    assert live.exit_code == 0, live.output
    assert "connected" in live.stdout
    assert "12" in live.stdout


def test_mask_keeps_ordinary_codes() -> None:
    assert mask({"code": "4006381333931", "n": 3}) == {"code": "4006381333931", "n": 3}
    masked = mask({"code": CARD, "lines": [f"x {CARD} y"]})
    assert CARD not in str(masked)
    assert masked["code"].endswith("1111]")
    assert mask("%B4111111111111111^DOE/J^2512?") != "%B4111111111111111^DOE/J^2512?"
