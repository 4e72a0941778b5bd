"""A real mosquitto broker per test: own config file, free loopback port, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.ports import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class Broker:
    """A mosquitto process we own. ``restart`` keeps the port; ``kill`` is SIGKILL."""

    workdir: Path
    port: int
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        return (
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra_config
        )

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        try:
            wait_for_port(self.port, timeout=10)
        except OSError:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start on {self.port}: {log}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        # the kernel may keep the port briefly in use after an abrupt exit
        for _ in range(50):
            try:
                self.start()
            except RuntimeError:
                time.sleep(0.1)
            else:
                return
        self.start()


@contextmanager
def running_broker(workdir: Path, extra_config: str = "") -> Iterator[Broker]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir=workdir, port=free_port(), extra_config=extra_config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
