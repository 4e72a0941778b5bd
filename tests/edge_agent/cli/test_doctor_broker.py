"""The one broker URL and TLS builder: the link and ``edge-agent doctor`` agree on every
URL and certificate setting, valid or not (the doctor used to guess ``localhost``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import Config
from edge_agent.config_load import load_config
from edge_agent.doctor.broker import broker_checks, broker_target, check_tls
from edge_agent.errors import ConfigError
from sync.broker import BrokerAddress, parse_broker_url, tls_context
from sync.errors import LinkError
from sync.link import Link, LinkConfig
from tests.edge_agent.cli.conftest import write_config

URLS = ["mqtt://broker.local", "mqtts://broker.local", "mqtt://10.0.0.5:1999",
        "mqtts://[::1]:8884", "mqtt://", "mqtts://:8883", "mqtt://h:notaport", "mqtt://h:99999",
        "http://x", "tcp://h:1", ""]


def _link(url: str) -> BrokerAddress | str:
    try:
        return Link(LinkConfig(url=url, client_id="t")).address
    except LinkError as exc:
        return f"LinkError: {exc}"


def _config(tmp_path: Path, url: str) -> Config:
    config = load_config(write_config(tmp_path, mqtt_url="mqtt://placeholder"))
    # as if the file said so, past load-time validation (the doctor must not rely on it)
    return config.model_copy(update={"mqtt": config.mqtt.model_copy(update={"url": url})})


def _doctor(config: Config) -> BrokerAddress | str:
    try:
        return broker_target(config)
    except LinkError as exc:
        return f"LinkError: {exc}"


@pytest.mark.parametrize("url", URLS)
def test_link_and_doctor_read_every_url_the_same_way(tmp_path: Path, url: str) -> None:
    assert _doctor(_config(tmp_path, url)) == _link(url)


@pytest.mark.parametrize("url", [u for u in URLS if isinstance(_link(u), str)])
def test_a_url_the_link_refuses_fails_the_doctor_and_the_config(tmp_path: Path,
                                                                url: str) -> None:
    results = broker_checks(_config(tmp_path, url), timeout=1.0)
    assert results[0].name == "broker URL"
    assert results[0].status == "fail"
    assert results[0].detail == str(_link(url)).removeprefix("LinkError: ")
    assert {r.status for r in results[1:]} == {"skip"}  # no DNS lookup of "localhost"
    if url.startswith(("mqtt://", "mqtts://")):
        with pytest.raises(ConfigError, match="broker URL"):
            load_config(write_config(tmp_path, mqtt_url=url))


def test_parse_gives_the_default_ports() -> None:
    assert parse_broker_url("mqtt://h") == BrokerAddress("h", 1883, False)
    assert parse_broker_url("mqtts://h") == BrokerAddress("h", 8883, True)


def test_tls_errors_are_the_same_for_link_and_doctor(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(LinkError) as from_builder:
        tls_context(missing)
    with pytest.raises(LinkError) as from_link:
        Link(LinkConfig(url="mqtts://127.0.0.1:1", client_id="t", ca_file=missing))
    assert str(from_link.value) == str(from_builder.value)
    config = _config(tmp_path, "mqtts://127.0.0.1:1")
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(
        update={"ca_file": missing})})
    result = check_tls(config, broker_target(config), timeout=1.0)
    assert (result.status, result.detail) == ("fail", str(from_builder.value))


def test_a_bad_client_certificate_is_a_link_error(tmp_path: Path) -> None:
    bad_cert = tmp_path / "cert.pem"
    bad_cert.write_text("not a certificate\n")
    with pytest.raises(LinkError, match="TLS setup failed"):
        tls_context(None, bad_cert)
