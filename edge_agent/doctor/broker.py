"""Doctor checks of the MQTT broker, each needing the one before: the URL (parsed by
:mod:`sync.broker`, as the link parses it), DNS, TCP, TLS (the link's own TLS context),
then a real login and ACL probe."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import AGENT_NAME
from edge_agent.config import Config
from edge_agent.doctor.result import CheckResult, passed
from edge_agent.errors import LedgerError
from edge_agent.ledger import read_stats
from edge_agent.ledger.schema import connect
from sync.broker import BrokerAddress, parse_broker_url, tls_context
from sync.errors import LinkError, WireFormatError
from sync.wire import canonical_json, now_ts, parse_ts

if TYPE_CHECKING:
    pass

log = structlog.get_logger("edge_agent.doctor")


CERT_WARN_DAYS = 30


BrokerTarget = BrokerAddress


def broker_target(config: Config) -> BrokerTarget:
    """The broker as the link sees it (:func:`sync.broker.parse_broker_url`): a URL the
    link refuses raises the same :class:`LinkError`, never a guessed host."""
    return parse_broker_url(config.mqtt.url)


def check_broker_url(config: Config) -> tuple[CheckResult, BrokerTarget | None]:
    try:
        target = broker_target(config)
    except LinkError as exc:
        return CheckResult("broker URL", "fail", str(exc),
                           "set mqtt.url to mqtt://host[:port] or mqtts://host[:port]"), None
    return passed("broker URL", f"{'mqtts' if target.tls else 'mqtt'}://{target.host}:"
                             f"{target.port}"), target


def check_dns(target: BrokerTarget) -> CheckResult:
    name = "broker DNS"
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return CheckResult(name, "fail", f"cannot resolve {target.host}: {exc.strerror}",
                           "check mqtt.url, the store's DNS server (resolvectl status) and the "
                           "network cable/router")
    addresses = sorted({str(info[4][0]) for info in infos})
    return passed(name, f"{target.host} → {', '.join(addresses[:3])}")


def check_tcp(target: BrokerTarget, timeout: float = 5.0) -> CheckResult:
    name = "broker TCP"
    started = time.monotonic()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return CheckResult(name, "fail", f"{target.host}:{target.port}: {reason}",
                           "the broker is down or a firewall blocks the port; ask central "
                           "operations, or check the store's outbound firewall")
    ms = (time.monotonic() - started) * 1000
    return passed(name, f"{target.host}:{target.port} reachable in {ms:.0f} ms")


def check_tls(config: Config, target: BrokerTarget, timeout: float = 5.0,
              now: datetime | None = None) -> CheckResult:
    name = "broker TLS"
    if not target.tls:
        return CheckResult(name, "skip", "mqtt:// is not encrypted (use mqtts:// outside a lab)")
    try:
        ctx = tls_context(config.mqtt.ca_file, config.mqtt.client_cert, config.mqtt.client_key)
        with socket.create_connection((target.host, target.port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=target.host) as tls:
            cert = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return CheckResult(name, "fail", f"certificate not trusted: {exc.verify_message}",
                           "set mqtt.ca_file to central's CA, or check the terminal's clock "
                           "(a wrong date makes valid certificates look expired)")
    except LinkError as exc:
        return CheckResult(name, "fail", str(exc),
                           "check mqtt.ca_file, mqtt.client_cert and mqtt.client_key")
    except (ssl.SSLError, OSError) as exc:
        return CheckResult(name, "fail", f"TLS handshake failed: {exc}",
                           "check that the port speaks TLS (8883) and mqtt.ca_file")
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return passed(name, f"{version}, certificate verified")
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
    days = (expires - (now or datetime.now(UTC))).days
    detail = f"{version}, certificate valid until {expires:%Y-%m-%d} ({days} days)"
    if days < CERT_WARN_DAYS:
        return CheckResult(name, "warn", detail, "ask central operations to renew the broker "
                                                 "certificate")
    return passed(name, detail)


@dataclass(slots=True)
class _Probe:
    connack: Any = None
    suback: list[Any] | None = None
    puback: Any = None
    disconnected: Any = None
    event: threading.Event | None = None


def mqtt_probe(config: Config, target: BrokerTarget, timeout: float = 5.0
               ) -> tuple[CheckResult, CheckResult]:
    """A real MQTT v5 CONNECT as the store; then publish to its own health topic (QoS 1)
    and subscribe to its own commands, reading the reason codes (0x87 = not authorized).

    The health message is a real health object built from the database, not retained, so
    it never replaces the agent's retained health and central does not count it as bad.
    """
    auth_name, acl_name = "broker authentication", "broker ACL"
    store = config.store.id
    root = f"{config.mqtt.root}/v1/stores/{store}"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{store}-doctor-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    probe = _Probe()
    cond = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        probe.connack = reason
        cond.set()

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        probe.suback = list(reasons)
        cond.set()

    def on_publish(_c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        probe.puback = reason
        cond.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        probe.disconnected = reason
        cond.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    password = config.mqtt.password.get_secret_value() if config.mqtt.password else None
    client.username_pw_set(config.mqtt_username, password)
    if target.tls:
        try:
            client.tls_set_context(tls_context(config.mqtt.ca_file, config.mqtt.client_cert,
                                               config.mqtt.client_key))
        except LinkError as exc:
            return CheckResult(auth_name, "fail", str(exc), "see the TLS check"), CheckResult(
                acl_name, "skip", "needs a successful login")

    def wait(attr: str) -> Any:
        deadline = time.monotonic() + timeout
        while getattr(probe, attr) is None and probe.disconnected is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            cond.wait(min(remaining, 0.1))
            cond.clear()
        return getattr(probe, attr)

    skip_acl = CheckResult(acl_name, "skip", "needs a successful login")
    try:
        client.connect(target.host, target.port, keepalive=max(5, int(timeout * 2)))
    except (OSError, ValueError) as exc:
        return CheckResult(auth_name, "fail", f"cannot connect: {exc}",
                           "see the TCP and TLS checks"), skip_acl
    client.loop_start()
    try:
        connack = wait("connack")
        if connack is None:
            return CheckResult(auth_name, "fail",
                               f"no CONNACK within {timeout:.0f} s",
                               "the port may not be an MQTT broker; check mqtt.url"), skip_acl
        if connack.is_failure:
            fix = ("the broker refused the store's login: check that the password file "
                   "(/etc/credstore/edge-agent/mqtt-password or mqtt.password_file) matches "
                   f"the broker's entry for user {config.mqtt_username!r}")
            return CheckResult(auth_name, "fail",
                               f"CONNACK: {connack} (user {config.mqtt_username})", fix), skip_acl
        auth = passed(auth_name, f"CONNACK: {connack} as {config.mqtt_username}")
        problems: list[str] = []
        client.subscribe(f"{root}/commands", qos=1)
        suback = wait("suback")
        if suback is None:
            problems.append(f"subscribe to {root}/commands: no SUBACK")
        elif any(getattr(r, "is_failure", False) for r in suback):
            problems.append(f"subscribe to {root}/commands refused ({suback[0]})")
        info = client.publish(f"{root}/health", _health_payload(config), qos=1, retain=False)
        del info
        puback = wait("puback")
        if puback is None:
            problems.append(f"publish to {root}/health: no PUBACK"
                            + (f" (disconnected: {probe.disconnected})"
                               if probe.disconnected is not None else ""))
        elif getattr(puback, "is_failure", False):
            problems.append(f"publish to {root}/health refused ({puback})")
        if problems:
            return auth, CheckResult(
                acl_name, "fail", "; ".join(problems),
                f"the broker's ACL must let user {config.mqtt_username!r} publish to "
                f"{root}/{{status,events,commands/ack,digest,health,devices/#}} and subscribe to "
                f"{root}/{{events/ack,commands}} (PROTOCOL §9)")
        return auth, passed(acl_name,
                            f"publish {root}/health and subscribe {root}/commands allowed")
    finally:
        client.disconnect()
        client.loop_stop()


def _health_payload(config: Config) -> bytes:
    figures: dict[str, Any] = {
        "outbox_pending": 0, "outbox_oldest_age_s": 0, "applied_cseq": 0, "db_bytes": 0,
        "wal_bytes": 0,
    }
    path = config.database.path
    if path.exists():
        try:
            conn = connect(path, readonly=True)
            try:
                stats = read_stats(conn, path)
            finally:
                conn.close()
            figures.update(outbox_pending=stats.outbox_pending, applied_cseq=stats.applied_cseq,
                           db_bytes=stats.db_bytes, wal_bytes=stats.wal_bytes)
            if stats.outbox_oldest_ts is not None:
                oldest = parse_ts(stats.outbox_oldest_ts).timestamp()
                figures["outbox_oldest_age_s"] = max(0, int(time.time() - oldest))
        except (LedgerError, OSError, sqlite3.Error, WireFormatError) as exc:
            log.debug("doctor.health_figures_unavailable", error=str(exc))
    directory = path.parent if path.parent.exists() else Path("/")
    health = {
        "v": 1, "store": config.store.id, "ts": now_ts(), "agent": AGENT_NAME, "uptime_s": 0,
        "last_ack_at": None, "disk_free_bytes": shutil.disk_usage(directory).free,
        "clock_offset_ms": None, "devices": {"connected": 0, "total": len(config.devices)},
        **figures,
    }
    return canonical_json(health)


def broker_checks(config: Config, timeout: float = 5.0, *,
                  agent_connected: bool = False) -> list[CheckResult]:
    """URL, DNS, TCP, TLS, then a real login and ACL probe; each needs the one before.
    No probe while the agent is connected: brokers bind the client id to the store's
    identity (use_username_as_clientid), so a probe would take over the agent's session."""
    url, target = check_broker_url(config)
    if target is None:  # the link would refuse it too: no guessed host
        return [url, *(CheckResult(name, "skip", "needs a valid broker URL") for name in (
            "broker DNS", "broker TCP", "broker TLS", "broker authentication", "broker ACL"))]
    dns = check_dns(target)
    tcp = check_tcp(target, timeout) if dns.status == "ok" else CheckResult(
        "broker TCP", "skip", "needs DNS")
    tls = check_tls(config, target, timeout) if tcp.status == "ok" else CheckResult(
        "broker TLS", "skip", "needs TCP")
    results = [dns, tcp, tls]  # a valid URL needs no row of its own
    if agent_connected:
        results.append(passed("broker authentication", "the running agent is logged in"))
        results.append(CheckResult(
            "broker ACL", "skip", "not probed while the agent is connected (a second "
            "session with its identity would replace the agent's)",
            "stop the agent to probe the ACL: `systemctl stop edge-agent`"))
    elif tcp.status == "ok" and tls.status != "fail":
        results.extend(mqtt_probe(config, target, timeout))
    else:
        results.append(CheckResult("broker authentication", "skip", "needs TCP and TLS"))
        results.append(CheckResult("broker ACL", "skip", "needs a successful login"))
    return results
