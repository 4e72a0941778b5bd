"""The broker templates of config/mosquitto enforce PROTOCOL v1 §9 on a real mosquitto.

The test renders THE shipped ``mosquitto.conf``/``mosquitto-tls.conf`` and ``acl`` with its
own port and paths, creates the password file with ``mosquitto_passwd -b`` and (TLS) a
test CA with the ``openssl`` CLI, then proves what a store and central can and cannot do.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.service import release_client
from tests.helpers.mosquitto import MOSQUITTO
from tests.helpers.ports import free_port, wait_for_port

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
ROOT = "retail/v1/stores"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
PASSWORDS = {"central": "central-pw", "S001": "s1-pw", "S002": "s2-pw"}

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None,
                                reason="mosquitto_passwd not installed")


def render(template: str, workdir: Path, port: int, listener: str) -> str:
    text = (TEMPLATES / template).read_text()
    assert f"listener {listener}\n" in text
    text = text.replace(f"listener {listener}\n", f"listener {port} 127.0.0.1\n")
    text = text.replace("/etc/mosquitto/edge", str(workdir))
    text = text.replace("persistence true", "persistence false")
    text = text.replace("persistence_location /var/lib/mosquitto/\n", "")
    text = text.replace("log_dest syslog", f"log_dest file {workdir}/mosquitto.log")
    if os.geteuid() == 0:
        # as root mosquitto would switch to the "mosquitto" user, which cannot read
        # pytest's private tmp_path; stay root for the test only
        text += "user root\n"
    return text


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(conf_text: str) -> None:
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(conf_text)
        shutil.copy(TEMPLATES / "acl", tmp_path / "acl")
        procs.append(subprocess.Popen([MOSQUITTO, "-c", str(conf)], cwd=tmp_path,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


class Client:
    """A paho MQTT 5 client that records the CONNACK and every message it receives."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None, *, client_id: str | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connack: Any = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set_context(tls)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = lambda *_a: self.done.set()
        self.client = client
        self.error: Exception | None = None
        try:
            client.connect("127.0.0.1", port, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
            self.done.set()
            return
        client.loop_start()
        self.done.wait(5)

    @property
    def ok(self) -> bool:
        return self.error is None and self.connack is not None and not self.connack.is_failure

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.done.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def subscribe(self, *filters: str) -> None:
        acked = threading.Event()
        self.client.on_subscribe = lambda *_a: acked.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert acked.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def wait_for(self, topic: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while topic not in self.topics():
            assert time.monotonic() < deadline, f"never received {topic}; got {self.topics()}"
            time.sleep(0.01)

    @property
    def dropped(self) -> bool:
        """The broker closed this (once connected) client's connection."""
        return self.ok and not self.client.is_connected()

    def roundtrip(self, topic: str) -> None:
        """Prove the connection still works: publish to a topic it reads, receive it."""
        marker = uuid.uuid4().hex.encode()
        self.publish(topic, marker)
        deadline = time.monotonic() + 10
        while marker not in [p for _, p in self.messages]:
            assert time.monotonic() < deadline, "the victim's own round trip never came back"
            time.sleep(0.01)

    def close(self) -> None:
        if self.error is None:
            self.client.disconnect()
            self.client.loop_stop()
        release_client(self.client)


@pytest.fixture
def password_broker(tmp_path: Path, start_broker: Any) -> int:
    port = free_port()
    passwd = tmp_path / "passwd"
    for user, password in PASSWORDS.items():
        flags = ["-b"] if passwd.exists() else ["-c", "-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, password], check=True,
                       capture_output=True)
    start_broker(render("mosquitto.conf", tmp_path, port, "1883"))
    wait_for_port(port)
    return port


def test_rendered_template_keeps_the_security_settings(tmp_path: Path) -> None:
    text = render("mosquitto.conf", tmp_path, 1234, "1883")
    for line in ("allow_anonymous false", "set_tcp_nodelay true", "per_listener_settings true",
                 f"password_file {tmp_path}/passwd", f"acl_file {tmp_path}/acl"):
        assert line in text.splitlines()


def test_anonymous_and_wrong_password_are_refused(password_broker: int) -> None:
    anonymous = Client(password_broker)
    wrong = Client(password_broker, "S001", "not-the-password")
    unknown = Client(password_broker, "S999", "s1-pw")
    good = Client(password_broker, "S001", PASSWORDS["S001"])
    try:
        assert not anonymous.ok
        assert not wrong.ok
        assert not unknown.ok
        assert good.ok
    finally:
        for c in (anonymous, wrong, unknown, good):
            c.close()


def test_store_confined_to_its_own_topics(password_broker: int) -> None:
    port = password_broker
    central = Client(port, "central", PASSWORDS["central"])
    s1 = Client(port, "S001", PASSWORDS["S001"])
    s2 = Client(port, "S002", PASSWORDS["S002"])
    try:
        assert central.ok
        assert s1.ok
        assert s2.ok
        central.subscribe(f"{ROOT}/+/status", f"{ROOT}/+/events", f"{ROOT}/+/commands/ack",
                          f"{ROOT}/+/digest", f"{ROOT}/+/health", f"{ROOT}/+/devices/+")
        s1.subscribe("#", f"{ROOT}/S002/commands", f"{ROOT}/S002/events/ack")
        s2.subscribe(f"{ROOT}/S002/events/ack", f"{ROOT}/S002/commands")
        # S001 impersonating S002, and forging an ack to itself: refused by the broker
        s1.publish(f"{ROOT}/S002/events", b'{"forged":1}')
        s1.publish(f"{ROOT}/S002/status", b'{"forged":2}')
        s1.publish(f"{ROOT}/S001/events/ack", b'{"forged":3}')
        s1.publish(f"{ROOT}/S001/commands", b'{"forged":4}')
        # S002's own traffic and central's messages to S002
        s2.publish(f"{ROOT}/S002/events", b"{}")
        central.publish(f"{ROOT}/S002/commands", b"{}")
        central.publish(f"{ROOT}/S002/events/ack", b"{}")
        # what S001 may do
        for rest in ("status", "events", "commands/ack", "digest", "health", "devices/till-1"):
            s1.publish(f"{ROOT}/S001/{rest}", b"{}")
        central.publish(f"{ROOT}/S001/commands", b"{}")
        central.publish(f"{ROOT}/S001/events/ack", b"{}")
        # central receives S002's and S001's own messages, never the forged ones
        central.wait_for(f"{ROOT}/S002/events")
        central.wait_for(f"{ROOT}/S001/devices/till-1")
        s2.wait_for(f"{ROOT}/S002/commands")
        s2.wait_for(f"{ROOT}/S002/events/ack")
        s1.wait_for(f"{ROOT}/S001/commands")
        s1.wait_for(f"{ROOT}/S001/events/ack")
        time.sleep(0.3)
        assert b'{"forged":1}' not in [p for _, p in central.messages]
        assert b'{"forged":2}' not in [p for _, p in central.messages]
        assert [p for _, p in s2.messages if p.startswith(b'{"forged')] == []
        # S001's "#" and its explicit S002 subscriptions yield only its own two topics
        assert sorted(set(s1.topics())) == [f"{ROOT}/S001/commands", f"{ROOT}/S001/events/ack"]
        assert [p for _, p in s1.messages if p.startswith(b'{"forged')] == []
        # central may not forge store events either
        central.publish(f"{ROOT}/S001/events", b'{"forged":5}')
        s1.publish(f"{ROOT}/S001/digest", b'{"marker":1}')
        central.wait_for(f"{ROOT}/S001/digest")
        time.sleep(0.2)
        assert b'{"forged":5}' not in [p for _, p in central.messages]
    finally:
        for c in (central, s1, s2):
            c.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", *EC_KEY, "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def _issue(d: Path, ca: str, cn: str, name: str, san: str | None = None) -> None:
    _openssl("req", *EC_KEY, "-nodes", "-subj", f"/CN={cn}", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", cwd=d)
    extra: list[str] = []
    if san:
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=d)


def _tls(d: Path, name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(d / "ca.crt"))
    if name is not None:
        context.load_cert_chain(str(d / f"{name}.crt"), str(d / f"{name}.key"))
    return context


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls_client_certificates(tmp_path: Path, start_broker: Any) -> None:
    d = tmp_path
    _make_ca(d, "ca")
    _make_ca(d, "rogue")
    _issue(d, "ca", "127.0.0.1", "server", san="IP:127.0.0.1")
    _issue(d, "ca", "S001", "S001")
    _issue(d, "ca", "central", "central")
    _issue(d, "rogue", "S001", "S001-rogue")
    port = free_port()
    start_broker(render("mosquitto-tls.conf", d, port, "8883"))
    wait_for_port(port)
    rogue_ctx = _tls(d, None)
    rogue_ctx.load_cert_chain(str(d / "S001-rogue.crt"), str(d / "S001-rogue.key"))
    store = Client(port, tls=_tls(d, "S001"))
    central = Client(port, tls=_tls(d, "central"))
    rogue = Client(port, tls=rogue_ctx)
    nocert = Client(port, tls=_tls(d, None))
    try:
        assert store.ok
        assert central.ok
        assert not rogue.ok  # certificate from an unknown CA
        assert not nocert.ok  # require_certificate
        # the CN is the username: the same ACL applies
        central.subscribe(f"{ROOT}/+/events")
        store.publish(f"{ROOT}/S002/events", b'{"forged":1}')
        store.publish(f"{ROOT}/S001/events", b"{}")
        central.wait_for(f"{ROOT}/S001/events")
        time.sleep(0.2)
        assert central.topics() == [f"{ROOT}/S001/events"]
    finally:
        for c in (store, central, rogue, nocert):
            c.close()


def test_add_store_script_provisions_a_working_store(tmp_path: Path, start_broker: Any) -> None:
    script = TEMPLATES / "add-store.sh"
    passwd, tokens, out = tmp_path / "passwd", tmp_path / "tokens", tmp_path / "out"
    refused = subprocess.run(["sh", str(script), "central", str(passwd), str(tokens), str(out)],
                             check=False, capture_output=True, text=True)
    assert refused.returncode == 2
    done = subprocess.run(["sh", str(script), "S003", str(passwd), str(tokens), str(out)],
                          capture_output=True, text=True, check=True)
    password = (out / "S003.mqtt-password").read_text().strip()
    assert password not in done.stdout
    assert (tokens / "S003.token").read_text() == (out / "S003.token").read_text()
    assert (tokens / "S003.token").stat().st_mode & 0o077 == 0
    port = free_port()
    start_broker(render("mosquitto.conf", tmp_path, port, "1883"))
    wait_for_port(port)
    good = Client(port, "S003", password)
    bad = Client(port, "S003", password + "x")
    try:
        assert good.ok
        assert not bad.ok
    finally:
        good.close()
        bad.close()


def _assert_no_takeover(port: int, connect: Any) -> None:
    """``connect(identity, client_id, will)`` opens a client authenticated as identity."""
    status_topic = f"{ROOT}/S002/status"
    central = connect("central", "edge-central-0", None)
    s2 = connect("S002", "edge-agent-S002", (status_topic, b'{"online":false}'))
    try:
        assert central.ok
        assert s2.ok
        central.subscribe(f"{ROOT}/+/events", f"{ROOT}/+/status")
        s2.publish(status_topic, b'{"online":true}')
        central.wait_for(status_topic)
        for victim_id in ("edge-central-0", "edge-central", "central", "edge-agent-S002",
                          "S002", "S002-doctor-1"):
            attacker = connect("S001", victim_id, None)
            try:
                assert attacker.ok  # the store's own credentials are valid
                time.sleep(0.3)  # mosquitto acts on a duplicate id at CONNECT
                assert not central.dropped, f"client id {victim_id!r} disconnected central"
                assert not s2.dropped, f"client id {victim_id!r} disconnected S002"
                # both still talk: S002's event reaches central on the same connections
                marker = uuid.uuid4().hex.encode()
                s2.publish(f"{ROOT}/S002/events", marker)
                deadline = time.monotonic() + 10
                while marker not in [p for _, p in central.messages]:
                    assert time.monotonic() < deadline, f"{victim_id!r}: S002 -> central broke"
                    time.sleep(0.01)
            finally:
                attacker.close()
        # S002's retained will was never published
        assert b'{"online":false}' not in [p for t, p in central.messages if t == status_topic]
    finally:
        central.close()
        s2.close()


def test_store_password_cannot_take_over_another_client_id(password_broker: int) -> None:
    def connect(identity: str, client_id: str, will: Any) -> Client:
        return Client(password_broker, identity, PASSWORDS[identity], client_id=client_id,
                      will=will)

    _assert_no_takeover(password_broker, connect)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_store_certificate_cannot_take_over_another_client_id(tmp_path: Path,
                                                              start_broker: Any) -> None:
    d = tmp_path
    _make_ca(d, "ca")
    _issue(d, "ca", "127.0.0.1", "server", san="IP:127.0.0.1")
    for cn in ("S001", "S002", "central"):
        _issue(d, "ca", cn, cn)
    port = free_port()
    start_broker(render("mosquitto-tls.conf", d, port, "8883"))
    wait_for_port(port)

    def connect(identity: str, client_id: str, will: Any) -> Client:
        return Client(port, tls=_tls(d, identity), client_id=client_id, will=will)

    _assert_no_takeover(port, connect)


def test_templates_bind_the_client_id_to_the_identity() -> None:
    for name in ("mosquitto.conf", "mosquitto-tls.conf"):
        lines = (TEMPLATES / name).read_text().splitlines()
        assert "use_username_as_clientid true" in lines, name
