"""The systemd units, udev rules and install.sh (dry run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.config import CentralSection, MqttSection

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
INSTALL = SYSTEMD / "install.sh"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file keeping repeated keys (DeviceAllow=, LoadCredential=...)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def one(values: dict[str, list[str]], key: str) -> str:
    assert key in values, f"{key}= missing"
    return values[key][-1]


def test_agent_unit_contract() -> None:
    service = unit("edge-agent.service")["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "Restart") == "on-failure"
    watchdog = one(service, "WatchdogSec")
    assert 5 <= int(watchdog.rstrip("s")) <= 120
    assert one(service, "User") == one(service, "Group") == "edge-agent"
    assert one(service, "StateDirectory") == "edge-agent"
    assert one(service, "RuntimeDirectory") == "edge-agent"
    assert one(service, "ConfigurationDirectory") == "edge-agent"
    assert one(service, "ExecStart") == (
        "/opt/edge-agent/bin/edge-agent run --config /etc/edge-agent/config.toml")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one(service, key) == "yes"
    assert one(service, "ProtectSystem") == "strict"
    assert set(one(service, "RestrictAddressFamilies").split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert one(service, "DevicePolicy") == "closed"
    allowed = {v.split()[0] for v in service["DeviceAllow"]}
    assert allowed == {"char-ttyUSB", "char-ttyACM", "char-ttyS", "char-input"}
    assert set(one(service, "SupplementaryGroups").split()) == {"dialout", "input"}
    creds = {v.split(":", 1)[0] for v in service["LoadCredential"]}
    assert {"mqtt-password", "central-token"} <= creds
    assert one(service, "StandardOutput") == "journal"
    assert "AF_BLUETOOTH" in (SYSTEMD / "edge-agent.service").read_text()
    assert unit("edge-agent.service")["Install"]["WantedBy"] == ["multi-user.target"]


def test_credential_names_match_the_config_defaults() -> None:
    service = unit("edge-agent.service")["Service"]
    creds = {v.split(":", 1)[0] for v in service["LoadCredential"]}
    assert MqttSection().password_credential in creds
    assert CentralSection().token_credential in creds


def test_central_unit() -> None:
    service = unit("edge-central.service")["Service"]
    assert one(service, "ExecStart") == (
        "/opt/edge-agent/bin/edge-central serve --config /etc/edge-central/config.toml")
    assert one(service, "Restart") == "on-failure"
    assert one(service, "ProtectSystem") == "strict"


@pytest.mark.parametrize("name", ["edge-agent.service", "edge-central.service"])
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt package systemd)")
    # verify checks that ExecStart exists: point it at a real executable, keep the rest.
    text = (SYSTEMD / name).read_text()
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M)
    copy = tmp_path / name
    copy.write_text(text)
    proc = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True,
                          text=True, timeout=60, check=False)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if name in line or "ignoring" in line.lower()]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not problems, proc.stdout + proc.stderr


RULE_TOKEN = re.compile(r'^\s*([A-Z]+)(\{[^}]+\})?\s*(==|!=|\+=|=|:=)\s*"([^"]*)"\s*$')
KNOWN_KEYS = {"SUBSYSTEM", "KERNEL", "ATTRS", "ENV", "MODE", "GROUP", "OWNER", "SYMLINK", "TAG"}


def rules(text: str) -> list[list[tuple[str, str, str, str]]]:
    out = []
    for line in text.splitlines():
        body = line.lstrip("#").strip() if line.startswith("#SUBSYSTEM") else line.strip()
        if not body or body.startswith("#"):
            continue
        tokens = []
        for part in body.split(","):
            m = RULE_TOKEN.match(part)
            assert m, f"unparsable udev rule part {part!r} in {line!r}"
            assert m.group(1) in KNOWN_KEYS, m.group(1)
            tokens.append((m.group(1), m.group(2) or "", m.group(3), m.group(4)))
        out.append(tokens)
    return out


def test_udev_rules() -> None:
    parsed = rules((SYSTEMD / "99-edge-agent.rules").read_text())
    vendors_with_group = set()
    symlink_vendors = set()
    for tokens in parsed:
        keys = {(k, a): v for k, a, _op, v in tokens}
        vendor = keys.get(("ATTRS", "{idVendor}"))
        assert vendor is not None
        assert re.fullmatch(r"[0-9a-f]{4}", vendor)
        if ("GROUP", "") in keys:
            assert keys[("GROUP", "")] == "edge-agent"
            assert keys[("MODE", "")] in ("0660", "0640")
            vendors_with_group.add(vendor)
        if ("SYMLINK", "") in keys:
            assert re.fullmatch(r"edge-agent/[A-Za-z0-9_-]+", keys[("SYMLINK", "")])
            symlink_vendors.add(vendor)
    common = {"0c2e", "05e0", "05f9", "0403", "1a86", "10c4"}
    assert common <= vendors_with_group
    assert common <= symlink_vendors


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHON": "python3"})


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    proc = run_install("--dry-run", "--root", str(stage), "--store-id", "S001",
                       "--mqtt-url", "mqtts://mqtt.example:8883")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"+ python3 -m venv {stage}/opt/edge-agent" in out
    assert f"pip install --quiet --upgrade {ROOT}" in out
    assert (f"+ install -m 0644 {ROOT}/systemd/edge-agent.service "
            f"{stage}/etc/systemd/system/edge-agent.service") in out
    assert f"{stage}/etc/udev/rules.d/99-edge-agent.rules" in out
    assert (f"edge-agent init --config {stage}/etc/edge-agent/config.toml --store-id S001 "
            "--no-db --mqtt-url mqtts://mqtt.example:8883") in out
    assert "secrets to write" in out
    assert not stage.exists()


def test_install_dry_run_is_idempotent_with_an_existing_config(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "etc/edge-agent").mkdir(parents=True)
    (stage / "etc/edge-agent/config.toml").write_text("[store]\nid = 'S001'\n")
    (stage / "opt/edge-agent/bin").mkdir(parents=True)
    python = stage / "opt/edge-agent/bin/python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    creds = stage / "etc/credstore/edge-agent"
    creds.mkdir(parents=True)
    for name in ("mqtt-password", "central-token"):
        (creds / name).write_text("x\n")
    proc = run_install("--dry-run", "--root", str(stage), "--store-id", "S001")
    assert proc.returncode == 0, proc.stderr
    assert "virtualenv" in proc.stdout
    assert "exists" in proc.stdout
    assert "python3 -m venv" not in proc.stdout
    assert " init " not in proc.stdout
    assert "config.toml exists: kept" in proc.stdout
    assert "secrets to write" not in proc.stdout
    assert (stage / "etc/edge-agent/config.toml").read_text() == "[store]\nid = 'S001'\n"


def test_install_system_dry_run_and_bad_arguments() -> None:
    proc = run_install("--dry-run", "--no-start")
    assert proc.returncode == 0, proc.stderr
    if shutil.which("getent") and subprocess.run(["getent", "passwd", "edge-agent"],
                                                 capture_output=True, check=False).returncode:
        assert "useradd --system --gid edge-agent" in proc.stdout
    assert "/etc/systemd/system/edge-agent.service" in proc.stdout
    bad = run_install("--dry-run", "--store-id", "not valid!")
    assert bad.returncode == 2
    assert "--store-id" in bad.stderr
    unknown = run_install("--bogus")
    assert unknown.returncode == 2
