"""A real PostgreSQL server for tests: initdb into a temporary directory, postgres on a free
loopback port with its unix socket in that directory, stopped by PID.

initdb refuses to run as root, so when the suite runs as root the server runs as the
``postgres`` (or ``nobody``) system user through ``subprocess``'s ``user=``; the data
directory lives in a directory that user owns (pytest's tmp_path is private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.helpers.ports import free_port, wait_for_port


def _default_bin() -> Path:
    """Where initdb/postgres live: $EDGE_TEST_PG_BIN, /usr/local/bin, else Debian's
    versioned directory (the apt package does not put them on PATH)."""
    if "EDGE_TEST_PG_BIN" in os.environ:
        return Path(os.environ["EDGE_TEST_PG_BIN"])
    if (Path("/usr/local/bin") / "postgres").exists():
        return Path("/usr/local/bin")
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return debian[-1].parent if debian else Path("/usr/local/bin")


PG_BIN = _default_bin()


def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None."""
    for name in ("initdb", "postgres"):
        if not (PG_BIN / name).exists() and shutil.which(name) is None:
            return f"{name} not found (set EDGE_TEST_PG_BIN)"
    if os.geteuid() == 0 and _service_user() is None:
        return "running as root and no unprivileged 'postgres' or 'nobody' user exists"
    return None


def _binary(name: str) -> str:
    path = PG_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _service_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@dataclass
class Postgres:
    base: Path
    port: int
    user: pwd.struct_passwd | None
    process: subprocess.Popen[bytes] | None = None
    databases: list[str] = field(default_factory=list)
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def init(self) -> None:
        subprocess.run(
            [_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C"],
            check=True, capture_output=True, cwd=self.base, **self._run_as(),
        )

    def start(self) -> None:
        log = (self.base / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [_binary("postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
             "-c", f"fsync={'on' if self.durable else 'off'}", "-c", "max_connections=200"],
            stdout=log, stderr=log, cwd=self.base, **self._run_as(),
        )
        log.close()
        wait_for_port(self.port, timeout=30)
        # the port opens slightly before the server accepts sessions
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                return

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.process = None


@contextmanager
def running_postgres(durable: bool = False) -> Iterator[Postgres]:
    """``durable=False`` (tests) runs with fsync=off; benchmarks pass True."""
    user = _service_user() if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="edge-pg-"))
    (base / "sock").mkdir()
    if user is not None:
        for path in (base, base / "sock"):
            os.chown(path, user.pw_uid, user.pw_gid)
    server = Postgres(base=base, port=free_port(), user=user, durable=durable)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
