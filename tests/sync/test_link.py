"""The MQTT link: URLs, credentials, TCP_NODELAY, will, reconnects through faults."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from sync.errors import AuthenticationFailed, LinkError
from sync.link import Link, LinkConfig, parse_broker_url
from sync.wire import loads
from tests.helpers.faultproxy import FaultProxy
from tests.helpers.mosquitto import Broker
from tests.helpers.peer_central import STORE, running_peer
from tests.helpers.ports import free_port
from tests.helpers.running_store import running_store, settings_for

RIGHT = "right-password"
WRONG = "wrong-password"


@pytest.mark.parametrize(("url", "host", "port", "tls"), [
    ("mqtt://broker.local", "broker.local", 1883, False),
    ("mqtts://broker.local", "broker.local", 8883, True),
    ("mqtt://10.0.0.5:1999", "10.0.0.5", 1999, False),
])
def test_parse_broker_url(url: str, host: str, port: int, tls: bool) -> None:
    address = parse_broker_url(url)
    assert (address.host, address.port, address.tls) == (host, port, tls)


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "tcp://h:1", "mqtt://h:notaport"])
def test_bad_broker_url(url: str) -> None:
    with pytest.raises(LinkError):
        parse_broker_url(url)


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), STORE, RIGHT],
                   check=True, capture_output=True)
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = _PasswordBroker(workdir=workdir, port=free_port(), extra_config=str(passwd))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class _PasswordBroker(Broker):
    def config_text(self) -> str:
        return (super().config_text().replace("allow_anonymous true\n", "")
                .replace(self.extra_config, "")
                + f"allow_anonymous false\npassword_file {self.extra_config}\n"
                # as root mosquitto would switch to the "mosquitto" user, which cannot read
                # pytest's private tmp_path
                + ("user root\n" if os.geteuid() == 0 else ""))


async def test_bad_credentials_raise_authentication_failed(password_broker: Broker) -> None:
    link = Link(LinkConfig(url=password_broker.url, client_id="t1", username=STORE,
                           password=WRONG))
    with pytest.raises(AuthenticationFailed):
        async with link.connect(will_topic="t/status", will_payload=b"{}"):
            pass
    good = Link(LinkConfig(url=password_broker.url, client_id="t2", username=STORE,
                           password=RIGHT))
    async with good.connect(will_topic="t/status", will_payload=b"{}") as session:
        await session.publish("t/x", b"1")


async def test_store_sync_backs_off_to_the_maximum_after_an_auth_failure(
    password_broker: Broker, store_db: Path,
) -> None:
    settings = settings_for(password_broker.url, None, username=STORE, password=WRONG,
                            backoff_base=0.01, backoff_max=3.0)
    async with running_store(store_db, settings) as store:
        await asyncio.sleep(1.2)
        counters = store.sync.counters
        # a plain connection failure would have retried ~tens of times by now
        assert counters.auth_failures == 1
        assert counters.connected is False
        assert store.sync.last_error is not None
        assert "credentials" in store.sync.last_error


async def test_client_socket_has_tcp_nodelay(broker: Broker) -> None:
    link = Link(LinkConfig(url=broker.url, client_id="nodelay"))
    async with link.connect(will_topic="t/status", will_payload=b"{}") as session:
        sock = session._client._client.socket()  # the paho socket under aiomqtt
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_will_is_published_retained_when_the_link_dies(broker: Broker) -> None:
    with FaultProxy(broker.port) as proxy:
        link = Link(LinkConfig(url=proxy.url, client_id="will-test", keepalive=5))
        will = b'{"state":"offline"}'
        async with link.connect(will_topic="t/status", will_payload=will) as session:
            await session.publish("t/status", b'{"state":"online"}', retain=True)
            proxy.reset()  # an abrupt loss: the broker publishes the will
            await asyncio.sleep(0.3)
    async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
        await watcher.subscribe("t/status", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(watcher.messages))
        assert message.retain
        assert loads(message.payload) == {"state": "offline"}  # type: ignore[arg-type]


async def test_connection_resets_mid_stream_deliver_everything_exactly_once(
    broker: Broker, store_db: Path,
) -> None:
    with FaultProxy(broker.port) as proxy:
        async with running_peer(broker) as peer, \
                running_store(store_db, settings_for(proxy.url, peer)) as store:
            epoch = store.port.current_epoch
            for round_ in range(4):
                await store.record(1500, start=1500 * round_)
                await asyncio.sleep(0.05)
                proxy.reset()  # publishes in flight raise: their outcome is unknown
            await peer.wait_for(lambda: peer.applied.get(epoch) == 6000, limit=30)
            assert [s for _, s, _ in peer.applied_events] == list(range(1, 6001))
            assert peer.conflicts == 0
            assert store.sync.counters.reconnects >= 1
            assert await store.stock() == {s: (v[0], v[1]) for s, v in peer.stock.items()
                                           if v != [0, 0]}


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, cn: str, name: str, san: str | None = None) -> None:
    _openssl("req", *EC_KEY, "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=d)
    extra: list[str] = []
    if san:
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=d)


class _TlsBroker(Broker):
    def config_text(self) -> str:
        d = self.extra_config
        return (super().config_text().replace(self.extra_config, "")
                + f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
                "require_certificate true\nuse_identity_as_username true\n"
                + ("user root\n" if os.geteuid() == 0 else ""))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
async def test_mqtts_with_client_certificate(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", *EC_KEY, "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _issue(d, "127.0.0.1", "server", san="IP:127.0.0.1")
    _issue(d, STORE, "store")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = _TlsBroker(workdir=workdir, port=free_port(), extra_config=str(d))
    broker.start()
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        link = Link(LinkConfig(url=url, client_id="tls-store", ca_file=d / "ca.crt",
                               cert_file=d / "store.crt", key_file=d / "store.key"))
        async with link.connect(will_topic="t/status", will_payload=b"{}") as session:
            await session.publish("t/x", b"over TLS")
        no_cert = Link(LinkConfig(url=url, client_id="tls-anon", ca_file=d / "ca.crt",
                                  connect_timeout=5))
        with pytest.raises(LinkError):
            async with no_cert.connect(will_topic="t/status", will_payload=b"{}"):
                pass
        with pytest.raises(LinkError, match="TLS setup"):
            Link(LinkConfig(url=url, client_id="x", ca_file=d / "missing.crt"))
    finally:
        broker.stop()
