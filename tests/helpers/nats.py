"""A real NATS server with its MQTT listener (MQTT 3.1.1, JetStream for sessions and
retained messages) per test: own config and store directory, free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.ports import free_port, wait_for_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def nats_unavailable() -> str | None:
    if not Path(NATS_SERVER).exists():
        return "nats-server not installed (Debian package nats-server)"
    return None


@dataclass
class Nats:
    workdir: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@contextmanager
def running_nats(workdir: Path) -> Iterator[Nats]:
    workdir.mkdir(parents=True, exist_ok=True)
    port, client_port = free_port(), free_port()
    conf = workdir / "nats.conf"
    conf.write_text(
        f'server_name: "edge-test-{os.getpid()}"\n'
        f"listen: 127.0.0.1:{client_port}\n"
        f'jetstream {{ store_dir: "{workdir / "js"}" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{port} }}\n")
    with (workdir / "nats.log").open("ab") as log:
        process = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for_port(port, timeout=30)
        yield Nats(workdir, port, process)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
