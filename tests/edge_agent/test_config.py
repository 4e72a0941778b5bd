"""Configuration: every problem at once, with key paths; secrets never shown."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edge_agent.config_load import load_config, parse_config
from edge_agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_real_store_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret-mqtt\n")
    (creds / "central-token").write_text("tok-central\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(REPO / "config" / "agent.example.toml")
    assert config.store.id == "S001"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret-mqtt"
    assert config.central.token is not None
    assert [d.name for d in config.devices] == ["till-1", "backroom", "door-main",
                                                "entrance-rfid"]
    assert config.devices[0].mode == "sale"
    assert config.mqtt_username == "S001"


def test_demo_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-state").mkdir()
    (tmp_path / "demo-state" / "central-token").write_text("demo-token")
    (tmp_path / "demo-state" / "api-token").write_text("demo-api-token")  # the demo writes it
    config = load_config(REPO / "config" / "demo.toml")
    assert config.store.id == "DEMO1"
    assert config.mqtt.password is None
    assert {d.kind for d in config.devices} >= {"serial_scanner", "door_counter", "em4100"}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[store]
id = "bad id!"
currency = "euro"
timezone = "Mars/Olympus_Mons"

[mqtt]
url = "http://broker"
keepalive_s = 1

[sync]
batch_max_events = 5000

[[devices]]
name = "till-1"
kind = "serial_scanner"
suffix = "NUL"

[[devices]]
name = "x"
kind = "teleporter"

[surprise]
key = 1
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    text = str(info.value)
    assert str(path) in text
    expected_paths = [
        "store.id", "store.currency", "store.timezone", "mqtt.url", "mqtt.keepalive_s",
        "sync.batch_max_events", "devices[0].port", "devices[0].suffix", "devices[1]",
        "surprise",
    ]
    for key in expected_paths:
        assert any(p.startswith(key) for p in problems), (key, problems)
    assert len(problems) >= len(expected_paths)
    assert any("'euro'" in p for p in problems)  # what was given is shown


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[store\nid = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_tells_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="edge-agent init"):
        load_config(tmp_path / "nope.toml")


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.toml"
    path.write_text('[store]\nid = "ENV1"\n')
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(path))
    assert load_config().store.id == "ENV1"


def test_inline_secrets_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = tmp_path / "inline.toml"
    path.write_text('[store]\nid = "S1"\n[mqtt]\npassword = "hunter2-inline"\n'
                    '[central]\ntoken = "tok-inline"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "mqtt" in text
    assert "central" in text
    assert "hunter2-inline" not in text
    assert "tok-inline" not in text


def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("hunter2-file")
    token_file = tmp_path / "tok"
    token_file.write_text("tok-file-123")
    config = parse_config(
        {"store": {"id": "S1"},
         "mqtt": {"password_file": str(secret_file)},
         "central": {"url": "https://c.example", "token_file": str(token_file)}},
        tmp_path / "x.toml",
    )
    assert config.mqtt.password is not None
    for shown in (json.dumps(config.redacted()), repr(config), str(config),
                  config.model_dump_json()):
        assert "hunter2-file" not in shown
        assert "tok-file-123" not in shown
    assert config.redacted()["mqtt"]["secret"] == "set (redacted)"  # noqa: S105 - the marker text


def test_unreadable_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the MQTT password file"):
        parse_config({"store": {"id": "S1"}, "mqtt": {"password_file": str(tmp_path / "no")}},
                     tmp_path / "x.toml")


def test_duplicate_device_names_are_refused(tmp_path: Path) -> None:
    dev = {"name": "d", "kind": "door_counter", "port": "/dev/null"}
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"store": {"id": "S1"}, "devices": [dev, dev]}, tmp_path / "x.toml")


@pytest.mark.skipif(os.geteuid() == 0 or shutil.which("true") is None,
                    reason="root reads any file")
def test_permission_denied_secret(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        parse_config({"store": {"id": "S1"}, "mqtt": {"password_file": str(secret)}},
                     tmp_path / "x.toml")
