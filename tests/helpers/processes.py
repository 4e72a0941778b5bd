"""Real agent and central processes for the chaos, hostile and TLS tests.

``CentralProcess`` runs ``python -m central serve`` (the ``edge-central`` entry
point); ``AgentProcess`` runs the agent under the chaos driver (``tests.chaos.driver``),
which is the real :class:`edge_agent.daemon.Agent` plus a fact generator and fault hooks.
Both are started by ``start()``, stopped by PID with SIGKILL (``kill``) or SIGTERM
(``terminate``). Optionally the agent runs under libfaketime with a wall-clock offset
that the harness can change while it runs (``set_clock_offset``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from central.runs import stock_cells
from central.storage import Database
from tests.helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
FAKETIME_LIBS = (
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/faketime/libfaketimeMT.so.1"),
)
ADMIN_TOKEN = "chaos-admin-token"  # noqa: S105 - test-only token


def faketime_lib() -> Path | None:
    """The libfaketime preload library, when installed (apt: libfaketime)."""
    return next((p for p in FAKETIME_LIBS if p.exists()), None)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def quick_check(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()


class _ReadsItsDatabase:
    """Read-only queries on a process's SQLite file while the process runs."""

    db: Path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()

    def meta(self, key: str) -> str | None:
        """A ``meta`` value (None while the database is being created)."""
        if not self.db.exists():
            return None
        try:
            rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        except sqlite3.Error:
            return None
        return str(rows[0][0]) if rows else None


class CentralProcess(_ReadsItsDatabase):
    """The reference central as a process, with its SQLite database and HTTP API."""

    def stock(self, store: str) -> dict[str, tuple[int, int]]:
        """sku → (on hand, reserved) of every applied event and command: the stock table's
        checkpoint plus the events after it, as the central's own readers compute it."""
        with Database(f"sqlite:///{self.db}").reading() as conn:
            return {sku: (cell[0], cell[1]) for sku, cell in stock_cells(conn, store).items()}

    def __init__(self, workdir: Path, broker_url: str, stores: list[str],
                 resend_after: float = 2.0, extra_config: str = "") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.db = workdir / "central.db"
        self.port = free_port()
        self.tokens = workdir / "tokens"
        self.tokens.mkdir(exist_ok=True)
        for store in stores:
            (self.tokens / f"{store}.token").write_text(f"tok-{store}")
        self.admin_file = workdir / "admin.token"
        self.admin_file.write_text(ADMIN_TOKEN)
        self.config = workdir / "central.toml"
        self.config.write_text(
            f'database_url = "sqlite:///{self.db}"\n'
            f"resend_after = {resend_after}\n"
            f'[broker]\nurl = "{broker_url}"\nclient_id = "central-chaos"\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\nstore_tokens_dir = "{self.tokens}"\n'
            f'admin_token_file = "{self.admin_file}"\n' + extra_config)
        self.log = workdir / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token_for(self, store: str) -> Path:
        return self.tokens / f"{store}.token"

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "central", "serve", "--config", str(self.config),
                 "--log-level", "WARNING"],
                stdout=log, stderr=log, cwd=REPO)
        self.starts += 1
        wait_until(self.ready, timeout, "central ready")

    def ready(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and bool(r.json().get("mqtt_connected"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def terminate(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            self.proc = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(method, f"{self.url}{path}", timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)
        r.raise_for_status()
        return r.json()



def agent_config_text(*, store: str, db: Path, broker_url: str, central_url: str,
                      token_file: Path, api_socket: Path, extra: str = "") -> str:
    return (
        f'[store]\nid = "{store}"\nopening_hours = ["00:00", "23:59"]\n'
        f'[database]\npath = "{db}"\nmin_free_bytes = 0\n'
        f'[mqtt]\nurl = "{broker_url}"\npassword_credential = ""\nkeepalive_s = 5\n'
        f'[central]\nurl = "{central_url}"\ntoken_file = "{token_file}"\n'
        'token_credential = ""\ntimeout_s = 5\n'
        "[sync]\nresend_after_s = 2\ndigest_interval_s = 3\nhealth_interval_s = 30\n"
        "backoff_initial_s = 0.2\nbackoff_max_s = 2\n"
        f'[api]\nsocket = "{api_socket}"\nsocket_mode = "0600"\n'
        '[logging]\nlevel = "warning"\nformat = "json"\n' + extra
    )


class AgentProcess(_ReadsItsDatabase):
    """One store agent under the chaos driver.

    The driver appends ``A <n>`` to ``facts.log`` before it asks the ledger to record fact
    ``n`` and ``K <n>`` once the ledger acknowledged it (committed durably).
    """

    def __init__(self, workdir: Path, store: str, broker_url: str, central: CentralProcess,
                 *, extra_config: str = "", faketime: bool = False) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.store = store
        self.db = workdir / "ledger.db"
        self.facts_log = workdir / "facts.log"
        self.clock_file = workdir / "faketime"
        self.log = workdir / "agent.log"
        self.config = workdir / "agent.toml"
        self.config.write_text(agent_config_text(
            store=store, db=self.db, broker_url=broker_url, central_url=central.url,
            token_file=central.token_for(store), api_socket=workdir / "api.sock",
            extra=extra_config))
        self.faketime = faketime_lib() if faketime else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def set_clock_offset(self, seconds: int) -> None:
        """Jump the agent's wall clock (libfaketime re-reads the file within a second)."""
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}s\n")
        tmp.replace(self.clock_file)

    def start(self, *, target: int, rate: float, mode: str = "none", mode_arg: int = 0,
              seed: int = 0, via: str = "ledger") -> None:
        """``via``: ``ledger`` (facts written through the ledger in-process) or ``api``
        (POSTed to the agent's own local API with idempotency keys, retried after a kill)."""
        env = dict(os.environ)
        env.update({
            "CHAOS_VIA": via,
            "CHAOS_TARGET": str(target), "CHAOS_RATE": str(rate), "CHAOS_MODE": mode,
            "CHAOS_MODE_ARG": str(mode_arg), "CHAOS_SEED": str(seed),
            "CHAOS_FACTS_LOG": str(self.facts_log),
        })
        if self.faketime is not None:
            if not self.clock_file.exists():
                self.set_clock_offset(0)
            env.update({"LD_PRELOAD": str(self.faketime),
                        "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
                        "FAKETIME_CACHE_DURATION": "1", "DONT_FAKE_MONOTONIC": "1"})
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.driver", str(self.config)],
                stdout=log, stderr=log, cwd=REPO, env=env)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL; False if it had already died (a self-inflicted kill)."""
        if self.proc is None:
            return False
        was_alive = self.proc.poll() is None
        if was_alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        return was_alive

    def terminate(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            code = -9
        self.proc = None
        return code

    def read_facts(self) -> tuple[set[int], set[int], set[int]]:
        """(attempted, acknowledged, refused) fact numbers from the driver's log."""
        found: dict[str, set[int]] = {"A": set(), "K": set(), "R": set()}
        if not self.facts_log.exists():
            return found["A"], found["K"], found["R"]
        for line in self.facts_log.read_text().splitlines():
            kind, _, number = line.partition(" ")
            if kind in found and number.isdigit():  # else a line cut by SIGKILL
                found[kind].add(int(number))
        return found["A"], found["K"], found["R"]

