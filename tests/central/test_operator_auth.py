"""The operator API of a real ``edge-central serve`` always needs the admin token
(issue 20, item 3), and the central's files are private whatever the umask (item 2).

The central starts under ``umask 022`` with no admin token configured: it generates one
beside its SQLite database (0600, never printed), and then nothing, not loopback, not a
forwarded header claiming loopback, reaches an operator endpoint, ``/docs`` or
``/openapi.json`` without it. A store's token for another store answers exactly as an
unknown token does (401), so the snapshot endpoint is no oracle of which tokens exist.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from central.cli import main
from tests.helpers.mosquitto import Broker
from tests.helpers.ports import free_port
from tests.helpers.slow_http import hold_slow_heads

REPO = Path(__file__).resolve().parents[2]


class Started:
    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.state = tmp_path / "var" / "lib" / "edge-central"
        tokens = tmp_path / "tokens"
        tokens.mkdir()
        (tokens / "S001.token").write_text("tok-S001")
        (tokens / "S002.token").write_text("tok-S002")
        self.port = free_port()
        self.config = tmp_path / "central.toml"
        self.config.write_text(
            f'database_url = "sqlite:///{self.state / "central.db"}"\n'
            f'[broker]\nurl = "{broker.url}"\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\nstore_tokens_dir = "{tokens}"\n')
        self.log = tmp_path / "central.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_CENTRAL_")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", 'umask 022 && exec "$@"', "sh", sys.executable, "-m", "central",
                 "serve", "--config", str(self.config)], stdout=log, stderr=log, cwd=REPO,
                env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "central never answered"
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def started(tmp_path: Path, broker: Broker) -> Iterator[Started]:
    central = Started(tmp_path, broker)
    try:
        yield central
    finally:
        central.stop()


def test_operator_token_is_generated_private_and_never_printed(started: Started) -> None:
    token_file = started.state / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert token not in started.log.read_text()
    assert str(token_file) in started.log.read_text()  # it says where the token is
    # the central's own files: database, WAL, SHM 0640 or stricter, directories 0750
    for path in [started.state.parent, started.state, *started.state.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        limit = 0o750 if path.is_dir() else 0o640
        assert mode & ~limit == 0, f"{path} is {mode:o}"
    assert {"central.db", "central.db-wal", "central.db-shm"} <= {
        p.name for p in started.state.iterdir()}


def test_operator_endpoints_always_need_the_token(started: Started) -> None:
    token = (started.state / "admin.token").read_text().strip()
    body = {"lines": [{"sku": "A-1", "delta": 5}]}
    with httpx.Client(base_url=started.url, timeout=30) as http:
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"},
                        {"Authorization": "Bearer tok-S002"},
                        {"Authorization": f"Basic {token}"}):
            assert http.post("/v1/stores/S002/adjust", json=body,
                             headers=headers).status_code == 401, headers
            assert http.get("/v1/status", headers=headers).status_code == 401
            docs = http.get("/docs", headers=headers)  # the page: sent to sign in
            assert docs.status_code == 303
            assert docs.headers["location"].startswith("/login")
            assert http.get("/openapi.json", headers=headers).status_code == 401
            assert http.get("/redoc", headers=headers).status_code == 404
        admin = {"Authorization": f"Bearer {token}"}
        assert http.post("/v1/stores/S002/adjust", json=body, headers=admin).status_code == 200
        assert "/v1/stores/{store}/adjust" in http.get("/openapi.json", headers=admin).json()[
            "paths"]
        assert "swagger" in http.get("/docs", headers=admin).text.lower()
        # snapshot: another store's token is as wrong as an unknown one
        snap = "/v1/stores/S001/snapshot"
        other = http.get(snap, headers={"Authorization": "Bearer tok-S002"})
        unknown = http.get(snap, headers={"Authorization": "Bearer tok-S999"})
        assert other.status_code == unknown.status_code == 401
        assert other.json() == unknown.json()
        assert http.get(snap, headers={"Authorization": "Bearer tok-S001"}).status_code == 200


def test_cli_reads_the_token_file(started: Started) -> None:
    runner = CliRunner()
    env = {"EDGE_CENTRAL_ADMIN_TOKEN": "", "EDGE_CENTRAL_ADMIN_TOKEN_FILE": ""}
    refused = runner.invoke(main, ["status", "--url", started.url], env=env)
    assert refused.exit_code != 0
    assert "HTTP 401" in refused.output
    assert "--token-file" in refused.output
    ok = runner.invoke(main, ["status", "--url", started.url, "--token-file",
                              str(started.state / "admin.token")], env=env)
    assert ok.exit_code == 0, ok.output
    assert (started.state / "admin.token").read_text().strip() not in ok.output


def test_slow_header_connections_are_closed(started: Started) -> None:
    def still_serves() -> None:
        assert httpx.get(f"{started.url}/healthz", timeout=30).status_code == 200

    hold_slow_heads("127.0.0.1", started.port, meanwhile=still_serves)
    still_serves()
