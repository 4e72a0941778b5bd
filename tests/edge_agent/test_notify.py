"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.notify import SystemdNotifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_watchdog_stopping_sequence(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SystemdNotifier(path)
    assert notifier.enabled
    assert notifier.ready("serving S001")
    assert notifier.watchdog()
    assert notifier.watchdog()
    assert notifier.status("outbox 3 pending")
    assert notifier.stopping()
    ready = receive(sock)
    assert ready == {"READY": "1", "STATUS": "serving S001", "MAINPID": str(os.getpid())}
    assert receive(sock) == {"WATCHDOG": "1"}
    assert receive(sock) == {"WATCHDOG": "1"}
    assert receive(sock) == {"STATUS": "outbox 3 pending"}
    assert receive(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.close()
    assert not notifier.notify("WATCHDOG=1")


def test_abstract_socket_address() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = SystemdNotifier("@" + name)
        assert notifier.ready()
        assert receive(sock)["READY"] == "1"
        notifier.close()
    finally:
        sock.close()


def test_env_variable_and_no_op_without_it(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    silent = SystemdNotifier()
    assert not silent.enabled
    assert not silent.ready()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = SystemdNotifier()
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}
    notifier.close()


def test_listener_gone_is_not_an_error(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.enabled
    assert not notifier.watchdog()
    notifier.close()


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "nonsense")
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None
