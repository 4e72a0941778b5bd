"""Doctor checks of this machine: the configuration file and its permissions, the ledger
database, free disk, the state directory, and each configured device's path."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.config import Config
from edge_agent.config_load import load_config
from edge_agent.doctor.result import CheckResult, passed
from edge_agent.errors import ConfigError, LedgerError
from edge_agent.maintenance import check_database

if TYPE_CHECKING:
    pass



SERVICE_USER = "edge-agent"
WAL_WARN_BYTES = 64 * 1024 * 1024


def check_config(path: Path | str | None) -> tuple[CheckResult, Config | None]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        first = str(exc).splitlines()
        problems = "; ".join(exc.problems) if exc.problems else first[0]
        return CheckResult("config", "fail", problems,
                           "fix the listed keys (`edge-agent config check`), or create the file "
                           "with `edge-agent init --store-id <ID>`"), None
    return passed("config", f"{config.source}: valid, store {config.store.id}, "
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
    return passed(name, f"{source} mode {mode:04o}")


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
    return passed(name, detail)


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
    return passed(name, detail)


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
        return passed(name, f"{directory} writable by {_who(user)}")
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
    return passed(name, f"{device.kind}: {path} present and accessible")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
