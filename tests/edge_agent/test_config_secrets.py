"""Each section with a secret (MQTT password, central token, API TCP token) reads it the
same way: a file, else a systemd credential, never inline; the section's own checks run
after the secret is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import CentralSection, MqttSection, TcpListen
from edge_agent.config_load import parse_config
from edge_agent.errors import ConfigError


def test_each_section_reads_its_own_credential(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, value in (("mqtt-password", "Pw-7731"), ("central-token", "Ct-8842"),
                        ("api-token", "At-9953")):
        (creds / name).write_text(f"{value}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    # (the sections are named: an absent one is its default, built when the module loads)
    config = parse_config({"store": {"id": "S1"}, "mqtt": {}, "central": {},
                           "api": {"tcp": {"port": 8080}}},
                          tmp_path / "c.toml")
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "Pw-7731"
    assert config.central.token is not None
    assert config.central.token.get_secret_value() == "Ct-8842"
    assert config.api.tcp is not None
    assert config.api.tcp.token is not None
    assert config.api.tcp.token.get_secret_value() == "At-9953"
    shown = repr(config) + str(config.redacted())
    assert not any(v in shown for v in ("Pw-7731", "Ct-8842", "At-9953"))


def test_a_file_wins_over_the_credential(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "central-token").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (tmp_path / "tok").write_text("from-file\n")
    section = CentralSection(token_file=tmp_path / "tok")
    assert section.token is not None
    assert section.token.get_secret_value() == "from-file"


@pytest.mark.parametrize(("section", "raw", "key"), [
    (MqttSection, {"password": "x"}, "password_file"),
    (CentralSection, {"token": "x"}, "token_file"),
    (TcpListen, {"port": 1, "token": "x"}, "token_file"),
])
def test_an_inline_secret_is_refused_by_every_section(section: type, raw: dict[str, object],
                                                      key: str) -> None:
    with pytest.raises(ValidationError, match=f"put it in a file \\({key}\\)"):
        section(**raw)


def test_the_sections_own_checks_run_after_the_secret(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ValidationError, match="needs a bearer token"):
        TcpListen(port=1)
    (tmp_path / "tok").write_text("t")
    assert TcpListen(port=1, token_file=tmp_path / "tok").token is not None
    with pytest.raises(ValidationError, match="client_cert and client_key go together"):
        MqttSection(client_cert=tmp_path / "cert.pem")


def test_every_inline_secret_is_one_problem_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"store": {"id": "S1"}, "mqtt": {"password": "a"},
                      "central": {"token": "b"}, "api": {"tcp": {"port": 1, "token": "c"}}},
                     tmp_path / "c.toml")
    lines = caught.value.problems
    assert sum("do not write the" in line for line in lines) == 3
    assert not any(value in line for line in lines for value in ("'a'", "'b'", "'c'"))
