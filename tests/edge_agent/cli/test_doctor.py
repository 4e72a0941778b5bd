"""Each doctor check against the real thing: mosquitto with passwords and an ACL, an HTTP
server for central, ptys for devices, a TLS listener with certificates made by openssl."""

from __future__ import annotations

import email.utils
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config_load import load_config
from edge_agent.doctor.broker import (
    BrokerTarget,
    _health_payload,
    broker_target,
    check_dns,
    check_tcp,
    check_tls,
    mqtt_probe,
)
from edge_agent.doctor.central import check_central, clock_offset_result
from edge_agent.doctor.local import check_config, check_database_file, check_device, check_disk
from edge_agent.doctor.result import worst
from edge_agent.doctor.run import run_checks
from edge_agent.doctor.service import check_agent, check_systemd
from sync.messages import Health
from tests.edge_agent.cli.conftest import (
    CENTRAL_SECRET,
    MQTT_SECRET,
    STORE,
    as_json,
    db_path,
    invoke,
    seed,
    write_config,
)
from tests.helpers.mosquitto import Broker
from tests.helpers.ports import free_port

needs_passwd = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None,
                                  reason="mosquitto_passwd not installed")


class AuthBroker(Broker):
    """mosquitto with a password file and the PROTOCOL §9 ACL for stores."""

    def config_text(self) -> str:
        return (
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {self.workdir / 'passwd'}\n"
            f"acl_file {self.workdir / 'acl'}\n"
            "persistence false\n"
            f"log_dest file {self.log_path}\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )


ACL = """
pattern write retail/v1/stores/%u/status
pattern write retail/v1/stores/%u/events
pattern write retail/v1/stores/%u/commands/ack
pattern write retail/v1/stores/%u/digest
pattern write retail/v1/stores/%u/health
pattern write retail/v1/stores/%u/devices/+
pattern read retail/v1/stores/%u/events/ack
pattern read retail/v1/stores/%u/commands
"""


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Broker]:
    work = tmp_path / "auth-broker"
    work.mkdir()
    passwd = work / "passwd"
    passwd.touch()
    for user, password in ((STORE, MQTT_SECRET), ("S002", "other-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                       capture_output=True, timeout=30)
    (work / "acl").write_text(ACL)
    broker = AuthBroker(workdir=work, port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- broker ------------------------------------------------------------------------------------
def test_mqtt_probe_on_an_open_broker(tmp_path: Path, broker: Broker) -> None:
    config = load_config(write_config(tmp_path, mqtt_url=broker.url))
    auth, acl = mqtt_probe(config, broker_target(config), timeout=5)
    assert auth.status == "ok", auth
    assert "Success" in auth.detail
    assert acl.status == "ok", acl


@needs_passwd
def test_mqtt_probe_login_and_acl(tmp_path: Path, auth_broker: Broker) -> None:
    good = load_config(write_config(tmp_path, mqtt_url=auth_broker.url))
    target = broker_target(good)
    auth, acl = mqtt_probe(good, target, timeout=5)
    assert (auth.status, acl.status) == ("ok", "ok"), (auth, acl)

    (tmp_path / "secrets" / "mqtt-password").write_text("wrong\n")
    wrong = load_config(tmp_path / "config.toml")
    auth, acl = mqtt_probe(wrong, target, timeout=5)
    assert auth.status == "fail"
    assert "CONNACK" in auth.detail
    assert "password" in auth.fix
    assert acl.status == "skip"
    assert "wrong" not in auth.detail + auth.fix

    # logged in as S002 but configured as store S001: the ACL refuses S001's topics
    (tmp_path / "secrets" / "mqtt-password").write_text("other-pw\n")
    other = write_config(tmp_path, mqtt_url=auth_broker.url)
    text = other.read_text().replace("[mqtt]\n", '[mqtt]\nusername = "S002"\n')
    (tmp_path / "secrets" / "mqtt-password").write_text("other-pw\n")
    other.write_text(text)
    auth, acl = mqtt_probe(load_config(other), target, timeout=3)
    assert auth.status == "ok", auth
    assert acl.status == "fail", acl
    assert "refused" in acl.detail
    assert "ACL" in acl.fix


def test_dns_tcp_checks(tmp_path: Path, broker: Broker) -> None:
    assert check_dns(BrokerTarget("localhost", 1883, False)).status == "ok"
    bad = check_dns(BrokerTarget("no-such-host.invalid", 1883, False))
    assert bad.status == "fail"
    assert "DNS" in bad.fix
    assert check_tcp(BrokerTarget("127.0.0.1", broker.port, False)).status == "ok"
    closed = check_tcp(BrokerTarget("127.0.0.1", free_port(), False), timeout=2)
    assert closed.status == "fail"
    assert "refused" in closed.detail.lower()


# -- TLS ------------------------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(work: Path, days: int) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 valid for ``days``."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "30", "-subj", "/CN=test-ca", cwd=work)
    _openssl("req", *ec, "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=work)
    (work / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", str(days), "-extfile", "ext",
             cwd=work)
    return work / "ca.pem", work / "server.pem", work / "server.key"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    work = tmp_path / "tls"
    work.mkdir()
    ca, cert, key = make_certs(work, days=10)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, ca
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_tls_check_trust_and_expiry(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    target = BrokerTarget("127.0.0.1", port, True)
    untrusted = load_config(write_config(tmp_path, mqtt_url=f"mqtts://127.0.0.1:{port}"))
    result = check_tls(untrusted, target)
    assert result.status == "fail"
    assert "ca_file" in result.fix
    path = write_config(tmp_path, mqtt_url=f"mqtts://127.0.0.1:{port}")
    path.write_text(path.read_text().replace("[mqtt]\n", f'[mqtt]\nca_file = "{ca}"\n'))
    trusted = load_config(path)
    soon = check_tls(trusted, target)
    assert soon.status == "warn", soon  # 10 days left
    assert "renew" in soon.fix
    a_month_ago = datetime.now(UTC) - timedelta(days=31)  # then 41 days were left
    assert check_tls(trusted, target, now=a_month_ago).status == "ok"
    plain = check_tls(trusted, BrokerTarget("127.0.0.1", port, False))
    assert plain.status == "skip"


# -- central ------------------------------------------------------------------------------------
class _Central(http.server.BaseHTTPRequestHandler):
    status_code = 200
    skew_s = 0.0
    seen: list[str | None] = []  # noqa: RUF012 -- test-only class state

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew_s, usegmt=True)

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("authorization"))
        body = b'{"v":1}'
        self.send_response(self.status_code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def central() -> Iterator[tuple[str, type[_Central]]]:
    handler = type("Central", (_Central,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_central_check_token_and_clock(tmp_path: Path,
                                       central: tuple[str, type[_Central]]) -> None:
    url, handler = central
    config = load_config(write_config(tmp_path, central_url=url))
    snapshot, clock = check_central(config)
    assert snapshot.status == "ok", snapshot
    assert clock.status == "ok", clock
    assert handler.seen[-1] == f"Bearer {CENTRAL_SECRET}"
    assert CENTRAL_SECRET not in snapshot.detail
    handler.status_code = 401
    snapshot, _ = check_central(config)
    assert snapshot.status == "fail"
    assert "401" in snapshot.detail
    assert "token" in snapshot.fix
    handler.status_code = 200
    handler.skew_s = -120  # central is two minutes behind us
    _, clock = check_central(config)
    assert clock.status == "fail"
    assert "timedatectl" in clock.fix
    no_url = load_config(write_config(tmp_path, central_url=None))
    assert check_central(no_url)[0].status == "warn"


def test_clock_offset_result_thresholds() -> None:
    now = time.time()
    date = email.utils.formatdate(now, usegmt=True)
    assert clock_offset_result(date, now).status == "ok"
    assert clock_offset_result(date, now + 5).status == "warn"
    assert clock_offset_result(date, now - 60).status == "fail"
    assert clock_offset_result(None, now).status == "skip"
    assert clock_offset_result("garbage", now).status == "skip"


# -- local checks -------------------------------------------------------------------------------
def test_device_checks_with_a_pty(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        devices = (f'[[devices]]\nname = "till-1"\nkind = "serial_scanner"\nport = "{port}"\n'
                   '[[devices]]\nname = "gone"\nkind = "serial_scanner"\n'
                   f'port = "{tmp_path / "ttyUSB9"}"\n'
                   '[[devices]]\nname = "net"\nkind = "serial_scanner"\n'
                   'port = "socket://127.0.0.1:9"\n')
        config = load_config(write_config(tmp_path, devices=devices))
        present, missing, network = (check_device(d) for d in config.devices)
        assert present.status == "ok", present
        assert missing.status == "fail"
        assert "not present" in missing.detail
        assert network.status == "skip"
        locked = tmp_path / "locked-tty"
        locked.touch(mode=0o600)
        os.chown(locked, 0, 0) if os.geteuid() == 0 else None
        text = write_config(tmp_path, devices=(
            f'[[devices]]\nname = "x"\nkind = "serial_scanner"\nport = "{locked}"\n'))
        device = load_config(text).devices[0]
        refused = check_device(device, user="nobody")
        assert refused.status == "fail", refused
        assert "99-edge-agent.rules" in refused.fix
    finally:
        os.close(master)
        os.close(slave)


def test_database_and_disk_checks(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert check_database_file(config).status == "warn"  # not created yet
    seed(db_path(tmp_path))
    result = check_database_file(config)
    assert result.status == "warn"  # new database: resync pending
    assert "resync" in result.detail
    assert check_disk(config).status == "ok"
    strict = write_config(tmp_path)
    strict.write_text(strict.read_text().replace("min_free_bytes = 0",
                                                 "min_free_bytes = 999999999999999"))
    assert check_disk(load_config(strict)).status == "fail"
    db = db_path(tmp_path)
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)
    db.write_bytes(bytes(data))
    broken = check_database_file(config)
    assert broken.status == "fail"
    assert "db restore" in broken.fix


def test_config_check_and_agent_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nid = 1\n")
    result, config = check_config(bad)
    assert result.status == "fail"
    assert config is None
    assert check_agent(None, "no socket").status == "warn"
    down = {"state": "running", "broker": {"connected": False}, "outbox": {"pending": 9}}
    assert check_agent(down).status == "fail"
    stuck = {"state": "running", "broker": {"connected": True},
             "outbox": {"pending": 9, "oldest_age_s": 3600}}
    assert check_agent(stuck).status == "warn"
    fine = {"state": "running", "broker": {"connected": True}, "outbox": {"pending": 0}}
    assert check_agent(fine).status == "ok"


def test_systemd_check(tmp_path: Path) -> None:
    fake = tmp_path / "systemctl"
    script = ('#!/bin/sh\nif [ "$1" = show ]; then echo {load}; else echo {answer}; fi\n')
    for answer, load, expected in (("active", "loaded", "ok"), ("failed", "loaded", "fail"),
                                   ("inactive", "loaded", "fail"),
                                   ("inactive", "not-found", "warn")):
        fake.write_text(script.format(answer=answer, load=load))
        fake.chmod(0o755)
        result = check_systemd(systemctl=str(fake))
        assert result.status == expected
        if expected == "fail":
            assert "journalctl -u edge-agent" in result.fix
    fake.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    assert check_systemd(systemctl=str(fake)).status == "skip"
    assert check_systemd(systemctl=str(tmp_path / "absent")).status == "skip"


def test_doctor_command_exit_codes(tmp_path: Path, broker: Broker,
                                   central: tuple[str, type[_Central]]) -> None:
    url, _handler = central
    config = write_config(tmp_path, mqtt_url=broker.url, central_url=url)
    seed(db_path(tmp_path))
    result = invoke(config, "doctor", "--json", "--timeout", "3")
    data = as_json(result)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["broker authentication"]["status"] == "ok"
    assert by_name["broker ACL"]["status"] == "ok"
    assert by_name["central snapshot"]["status"] == "ok"
    assert by_name["agent"]["status"] == "warn"
    failing = [c for c in data["checks"] if c["status"] == "fail"]
    assert result.exit_code == (1 if failing else 0), failing
    assert MQTT_SECRET not in result.output
    assert CENTRAL_SECRET not in result.output

    broker.stop()
    down = invoke(config, "doctor", "--timeout", "2")
    assert down.exit_code == 1
    assert "FAIL  broker TCP" in down.stdout
    assert "fix:" in down.stdout
    offline = run_checks(config, network=False)
    assert not [c for c in offline if c.name.startswith(("broker", "central"))]
    assert worst(offline) in ("ok", "warn")


def test_probe_health_payload_is_a_valid_health_message(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    seed(db_path(tmp_path))
    payload = json.loads(_health_payload(config))
    health = Health.model_validate(payload)
    assert health.store == STORE
    assert health.outbox_pending == 3
    assert payload["outbox_oldest_age_s"] >= 0


class BoundIdBroker(AuthBroker):
    """The same, with the shipped templates' client-id binding."""

    def config_text(self) -> str:
        return super().config_text() + "use_username_as_clientid true\n"


@needs_passwd
def test_doctor_leaves_a_connected_agent_alone(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    work = tmp_path / "bound-broker"
    work.mkdir()
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(work / "passwd"), STORE, MQTT_SECRET],
                   check=True, capture_output=True, timeout=30)
    (work / "acl").write_text(ACL)
    broker = BoundIdBroker(workdir=work, port=free_port())
    broker.start()
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=STORE, protocol=mqtt.MQTTv5)
    agent.username_pw_set(STORE, MQTT_SECRET)
    lost = threading.Event()
    agent.on_disconnect = lambda *_a: lost.set()
    try:
        agent.connect("127.0.0.1", broker.port)
        agent.loop_start()
        deadline = time.monotonic() + 30
        while not agent.is_connected():
            assert time.monotonic() < deadline, "the stand-in agent never connected"
            time.sleep(0.02)
        config = write_config(tmp_path, mqtt_url=broker.url)
        running = {"state": "running", "broker": {"connected": True}, "outbox": {}}
        results = {r.name: r for r in run_checks(config, agent_status=lambda _c: (running, None),
                                                 timeout=5)}
        assert results["broker authentication"].status == "ok"
        assert results["broker ACL"].status == "skip"
        time.sleep(0.5)
        assert not lost.is_set(), "doctor's probe took over the running agent's session"
        # without a running agent the probe runs, and with the same identity it would
        # indeed replace the agent's connection: the trade-off the skip avoids
        results = {r.name: r for r in run_checks(config, timeout=5)}
        assert results["broker ACL"].status == "ok", results["broker ACL"]
        assert lost.wait(10)
    finally:
        agent.loop_stop()
        agent.disconnect()
        broker.stop()
