"""``edge-agent doctor``: every check a technician needs, each with a plain-language fix.

Each check is a function returning :class:`CheckResult` (``ok``, ``warn``, ``fail`` or
``skip``), testable on its own. :func:`run_checks` runs them in order; a check that
depends on an earlier one (TLS needs TCP, authentication needs TLS) is skipped with the
reason when that one failed.
"""

from __future__ import annotations

import email.utils
import grp
import os
import pwd
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import AGENT_NAME
from edge_agent.config import Config
from edge_agent.config_load import load_config
from edge_agent.errors import ConfigError, LedgerError
from edge_agent.ledger import read_stats
from edge_agent.ledger.schema import connect
from edge_agent.maintenance import check_database
from sync.broker import BrokerAddress, parse_broker_url, tls_context
from sync.errors import LinkError, WireFormatError
from sync.wire import canonical_json, now_ts, parse_ts

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger("edge_agent.doctor")
Status = Literal["ok", "warn", "fail", "skip"]
SERVICE_USER = "edge-agent"
WAL_WARN_BYTES = 64 * 1024 * 1024
CLOCK_WARN_MS = 2_000
CLOCK_FAIL_MS = 30_000
CERT_WARN_DAYS = 30


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


# -- configuration, database, disk -------------------------------------------------------
def check_config(path: Path | str | None) -> tuple[CheckResult, Config | None]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        first = str(exc).splitlines()
        problems = "; ".join(exc.problems) if exc.problems else first[0]
        return CheckResult("config", "fail", problems,
                           "fix the listed keys (`edge-agent config check`), or create the file "
                           "with `edge-agent init --store-id <ID>`"), None
    return _ok("config", f"{config.source}: valid, store {config.store.id}, "
                         f"{len(config.devices)} device(s)"), config


def check_config_permissions(config: Config) -> CheckResult:
    name = "config permissions"
    source = config.source
    if source is None or not source.exists():
        return CheckResult(name, "skip", "no configuration file")
    mode = stat.S_IMODE(source.stat().st_mode)
    text = source.read_text(encoding="utf-8", errors="replace")
    refs_secret = any(w in text for w in ("password_file", "token_file", "client_key"))
    if mode & stat.S_IWOTH:
        return CheckResult(name, "fail", f"{source} is world-writable ({mode:04o})",
                           f"chmod 640 {source}")
    if refs_secret and mode & stat.S_IROTH:
        return CheckResult(name, "warn",
                           f"{source} references secret files and is world-readable ({mode:04o})",
                           f"chmod 640 {source} && chgrp {SERVICE_USER} {source}")
    return _ok(name, f"{source} mode {mode:04o}")


def check_database_file(config: Config) -> CheckResult:
    name = "database"
    path = config.database.path
    if not path.exists():
        return CheckResult(name, "warn", f"{path} does not exist yet",
                           "start the agent (it creates the database) or run `edge-agent init`")
    try:
        result = check_database(path)
    except LedgerError as exc:
        return CheckResult(name, "fail", str(exc), "see `edge-agent db check`")
    if not result.ok:
        return CheckResult(
            name, "fail", f"{path}: {'; '.join(result.problems)}",
            "stop the agent and restore the latest backup: `edge-agent db restore <backup>` "
            "(a new epoch keeps central consistent)",
        )
    if result.store_id != config.store.id:
        return CheckResult(name, "fail",
                           f"{path} belongs to store {result.store_id}, config says "
                           f"{config.store.id}",
                           "fix store.id or database.path in the configuration")
    epoch = result.epochs[-1] if result.epochs else None
    detail = (f"{path}: quick_check ok, schema v{result.schema_version}, "
              f"epoch {epoch.epoch[:8] if epoch else '?'} last seq "
              f"{epoch.last_seq if epoch else 0}")
    if result.resync_needed:
        return CheckResult(name, "warn", detail + "; a resync from central is pending",
                           "the agent resyncs once central's snapshot URL is reachable "
                           "(see the central check); `edge-agent sync resync` asks again")
    return _ok(name, detail)


def check_disk(config: Config) -> CheckResult:
    name = "disk"
    path = config.database.path
    directory = path.parent if path.parent.exists() else Path("/")
    free = shutil.disk_usage(directory).free
    wal = Path(f"{path}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    detail = f"{_mib(free)} free on {directory}, WAL {_mib(wal_bytes)}"
    if free < config.database.min_free_bytes:
        return CheckResult(name, "fail", detail,
                           f"free space on {directory} (below database.min_free_bytes = "
                           f"{_mib(config.database.min_free_bytes)}); old logs: "
                           "`journalctl --vacuum-size=100M`")
    if wal_bytes > WAL_WARN_BYTES:
        return CheckResult(name, "warn", detail,
                           "a long-running reader keeps the WAL from checkpointing; restart "
                           "the agent, and check that no backup or tool holds the database open")
    return _ok(name, detail)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def check_state_dir(config: Config, user: str = SERVICE_USER) -> CheckResult:
    name = "state directory"
    directory = config.database.path.parent
    if not directory.exists():
        return CheckResult(name, "warn", f"{directory} does not exist",
                           "systemd creates it at the first start (StateDirectory=); by hand: "
                           f"install -d -o {user} -g {user} -m 750 {directory}")
    if _accessible_by(directory, user, os.W_OK | os.X_OK):
        return _ok(name, f"{directory} writable by {_who(user)}")
    return CheckResult(name, "fail", f"{directory} is not writable by {_who(user)}",
                       f"chown -R {user}:{user} {directory}")


def _who(user: str) -> str:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"the current user (no {user!r} user here)"
    return f"user {user!r}"


def _accessible_by(path: Path, user: str, mode: int) -> bool:
    """Would ``user`` (if it exists, else the current process) get ``mode`` on ``path``?"""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return os.access(path, mode)
    st = path.stat()
    if entry.pw_uid == 0:
        return True
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_uid == entry.pw_uid:
        shift = 6
    elif st.st_gid in groups:
        shift = 3
    else:
        shift = 0
    perms = (st.st_mode >> shift) & 0o7
    want = ((mode & os.R_OK) and 4) | ((mode & os.W_OK) and 2) | ((mode & os.X_OK) and 1)
    return perms & want == want


# -- devices -----------------------------------------------------------------------------
def device_path(device: Any) -> str | None:
    """The local device node of a configured device, or None for network/radio sources."""
    for attr in ("port", "path"):
        value = getattr(device, attr, None)
        if isinstance(value, str):
            return None if "://" in value else value
    source = getattr(device, "source", None)
    if isinstance(source, str) and source.startswith("sim://"):
        return source.removeprefix("sim://")
    return None


def check_device(device: Any, user: str = SERVICE_USER) -> CheckResult:
    name = f"device {device.name}"
    if not getattr(device, "enabled", True):
        return CheckResult(name, "skip", "disabled in the configuration")
    path_text = device_path(device)
    if path_text is None:
        where = getattr(device, "port", None) or getattr(device, "source", "?")
        return CheckResult(name, "skip", f"{device.kind} on {where}: not a local device node")
    path = Path(path_text)
    if not path.exists():
        return CheckResult(
            name, "fail", f"{device.kind}: {path} is not present",
            "plug the device in and check the cable; `ls -l /dev/serial/by-id /dev/edge-agent` "
            "shows what is attached; fix the port in the configuration or the udev rule",
        )
    if not _accessible_by(path, user, os.R_OK | os.W_OK):
        resolved = path.resolve()
        st = resolved.stat()
        group = _group_name(st.st_gid)
        return CheckResult(
            name, "fail",
            f"{device.kind}: {resolved} (group {group}, mode {stat.S_IMODE(st.st_mode):04o}) "
            f"is not readable and writable by {_who(user)}",
            f"install systemd/99-edge-agent.rules (sudo systemd/install.sh) or add {user} to "
            f"group {group}; then replug the device",
        )
    return _ok(name, f"{device.kind}: {path} present and accessible")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- broker --------------------------------------------------------------------------------
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
    return _ok("broker URL", f"{'mqtts' if target.tls else 'mqtt'}://{target.host}:"
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
    return _ok(name, f"{target.host} → {', '.join(addresses[:3])}")


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
    return _ok(name, f"{target.host}:{target.port} reachable in {ms:.0f} ms")


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
        return _ok(name, f"{version}, certificate verified")
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
    days = (expires - (now or datetime.now(UTC))).days
    detail = f"{version}, certificate valid until {expires:%Y-%m-%d} ({days} days)"
    if days < CERT_WARN_DAYS:
        return CheckResult(name, "warn", detail, "ask central operations to renew the broker "
                                                 "certificate")
    return _ok(name, detail)


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
        auth = _ok(auth_name, f"CONNACK: {connack} as {config.mqtt_username}")
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
        return auth, _ok(acl_name, f"publish {root}/health and subscribe {root}/commands allowed")
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


# -- central -------------------------------------------------------------------------------
def check_central(config: Config, timeout: float = 10.0,
                  transport: httpx.BaseTransport | None = None
                  ) -> tuple[CheckResult, CheckResult]:
    """GET the snapshot URL with the token (headers only) and compare the Date header."""
    import httpx  # noqa: PLC0415 -- not loaded by `edge-agent run` (the daemon)

    name, clock = "central snapshot", "clock"
    if config.central.url is None:
        return (CheckResult(name, "warn", "central.url is not set: the store cannot resync",
                            "set central.url in the configuration"),
                CheckResult(clock, "skip", "needs central.url"))
    url = f"{config.central.url.rstrip('/')}/v1/stores/{config.store.id}/snapshot"
    headers = {"User-Agent": AGENT_NAME}
    if config.central.token is not None:
        headers["Authorization"] = f"Bearer {config.central.token.get_secret_value()}"
    verify: Any = True
    if config.central.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(config.central.ca_file))
    try:
        with httpx.Client(timeout=timeout, verify=verify, transport=transport) as client:
            sent = time.time()
            with client.stream("GET", url, headers=headers) as response:
                received = time.time()
                status = response.status_code
                date = response.headers.get("date")
    except httpx.HTTPError as exc:
        return (CheckResult(name, "fail", f"{url}: {type(exc).__name__}: {exc}",
                            "check central.url, DNS and the firewall; `curl -I` the URL"),
                CheckResult(clock, "skip", "central unreachable"))
    if status in (401, 403):
        result = CheckResult(
            name, "fail", f"{url}: HTTP {status} (token refused)",
            "install the store's token as the central-token credential "
            "(/etc/credstore/edge-agent/central-token) or central.token_file; ask central "
            "operations for a new one")
    elif status == 404:
        result = CheckResult(name, "fail", f"{url}: HTTP 404",
                             "central does not know this store id, or central.url is wrong")
    elif status >= 400:
        result = CheckResult(name, "fail", f"{url}: HTTP {status}",
                             "central has a problem; ask central operations")
    else:
        result = _ok(name, f"{url}: HTTP {status}")
    return result, clock_offset_result(date, (sent + received) / 2)


def clock_offset_result(date_header: str | None, local_ts: float) -> CheckResult:
    name = "clock"
    if not date_header:
        return CheckResult(name, "skip", "central sent no Date header")
    try:
        remote = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return CheckResult(name, "skip", f"unreadable Date header {date_header!r}")
    offset_ms = int((local_ts - remote) * 1000)
    # The Date header has one-second resolution: allow it.
    shown = f"local clock {offset_ms:+d} ms against central (±1 s resolution)"
    fix = "enable time sync: `timedatectl set-ntp true`, check `timedatectl timesync-status`"
    if abs(offset_ms) > CLOCK_FAIL_MS:
        return CheckResult(name, "fail", shown, fix)
    if abs(offset_ms) > CLOCK_WARN_MS + 1000:
        return CheckResult(name, "warn", shown, fix)
    return _ok(name, shown)


# -- systemd, agent ------------------------------------------------------------------------
def check_systemd(unit: str = "edge-agent", systemctl: str | None = None) -> CheckResult:
    name = "systemd unit"
    exe = systemctl or shutil.which("systemctl")
    if exe is None:
        return CheckResult(name, "skip", "systemctl not found (not a systemd system)")
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed arguments
            [exe, "is-active", unit], capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult(name, "skip", f"systemctl failed: {exc}")
    state = proc.stdout.strip()
    if state == "active":
        return _ok(name, f"{unit}: active")
    if state in ("inactive", "failed") and _load_state(exe, unit) == "not-found":
        return CheckResult(name, "warn", f"{unit}.service is not installed",
                           "install it with `sudo systemd/install.sh` (see the README)")
    if state in ("inactive", "failed", "activating", "deactivating", "reloading"):
        return CheckResult(name, "fail" if state in ("inactive", "failed") else "warn",
                           f"{unit}: {state}",
                           f"`journalctl -u {unit} -n 50` shows why; start it with "
                           f"`systemctl start {unit}`")
    reason = (proc.stderr.strip() or state or "no answer").splitlines()[0]
    return CheckResult(name, "skip", f"systemd is not running here ({reason})")


def _load_state(exe: str, unit: str) -> str:
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed arguments
            [exe, "show", "-p", "LoadState", "--value", unit], capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


def check_agent(status: dict[str, Any] | None, error: str | None = None) -> CheckResult:
    """What the running agent says about itself (from ``GET /v1/status``)."""
    name = "agent"
    if status is None:
        return CheckResult(name, "warn", f"daemon not reachable ({error or 'not running'})",
                           "start it: `systemctl start edge-agent`; `journalctl -u edge-agent` "
                           "shows why it stopped")
    broker = status.get("broker") or {}
    outbox = status.get("outbox") or {}
    age = outbox.get("oldest_age_s")
    link = "connected" if broker.get("connected") else "NOT connected"
    detail = (f"{status.get('state')}, broker {link}, outbox "
              f"{outbox.get('pending', 0)} pending"
              + (f", oldest {int(age)} s" if isinstance(age, int | float) else ""))
    if not broker.get("connected"):
        return CheckResult(name, "fail", detail,
                           "see the broker checks above; the agent retries with backoff and "
                           "keeps every sale in its outbox meanwhile")
    if isinstance(age, int | float) and age > 600:
        return CheckResult(name, "warn", detail,
                           "central is not acknowledging; check central's alerts for this "
                           "store (quarantine) and `edge-agent sync watch`")
    if status.get("resync_needed"):
        return CheckResult(name, "warn", detail + ", resync pending",
                           "see the central snapshot check")
    return _ok(name, detail)


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
        results.append(_ok("broker authentication", "the running agent is logged in"))
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


def run_checks(
    config_path: Path | str | None,
    *,
    agent_status: Callable[[Config], tuple[dict[str, Any] | None, str | None]] | None = None,
    network: bool = True,
    timeout: float = 5.0,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    config_result, config = check_config(config_path)
    results.append(config_result)
    if config is None:
        return results
    results.append(check_config_permissions(config))
    results.append(check_database_file(config))
    results.append(check_state_dir(config))
    results.append(check_disk(config))
    results.extend(check_device(d) for d in config.devices)
    agent_connected = False
    if agent_status is not None:
        status, error = agent_status(config)
        results.append(check_agent(status, error))
        agent_connected = bool(status and (status.get("broker") or {}).get("connected"))
    if network:
        results.extend(broker_checks(config, timeout, agent_connected=agent_connected))
        results.extend(check_central(config, timeout=max(timeout, 5.0)))
    results.append(check_systemd())
    return results


def worst(results: list[CheckResult]) -> Status:
    order: dict[Status, int] = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}
    return max((r.status for r in results), key=lambda s: order[s], default="ok")
