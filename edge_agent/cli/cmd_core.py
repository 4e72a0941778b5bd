"""``run``, ``init``, ``status``, ``doctor``, ``simulate``, ``config check|show``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.text import Text

from edge_agent.cli import local
from edge_agent.cli._base import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    DaemonUnreachable,
    console,
    emit_json,
    json_option,
    kv_table,
    note,
    state,
    table,
)
from edge_agent.cli.app import cli
from edge_agent.cli.client import DaemonClient
from edge_agent.cli.human import iso
from edge_agent.cli.init_config import render_config, validate, write_private
from edge_agent.config import Config
from edge_agent.doctor.local import check_config_permissions, check_state_dir
from edge_agent.doctor.result import worst
from edge_agent.doctor.run import run_checks
from edge_agent.errors import ConfigError
from edge_agent.ledger import Ledger, is_locked

T = TypeVar("T")


# -- shared: daemon first, database when it is down -------------------------------------------
def client_for(config: Config) -> DaemonClient:
    return DaemonClient(config.api.socket)


def daemon_or_db(api: Callable[[DaemonClient], T], db: Callable[[Config], T]) -> tuple[T, bool]:
    """Ask the daemon; when it is unreachable read the database (and say so on stderr)."""
    config = state().config()
    try:
        return api(client_for(config)), True
    except DaemonUnreachable as exc:
        if is_locked(config.database.path):
            note(f"{exc.message} — the agent holds the database; read from the database "
                 "(read-only)")
        else:
            note("daemon not running — read from the database")
        return db(config), False


# -- run: edge_agent/cli/cmd_run.py (light to import) -------------------------------------------


# -- init ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--store-id", required=True, help="This store's id (also its MQTT username).")
@click.option("--mqtt-url", help="Broker URL, mqtts://host:8883.")
@click.option("--central-url", help="Central's HTTP base URL (snapshot).")
@click.option("--db-path", type=click.Path(path_type=Path),
              help="Database file (default /var/lib/edge-agent/ledger.db).")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path),
              help="API socket path (default /run/edge-agent/api.sock).")
@click.option("--store-name", help="Human name of the store.")
@click.option("--force", is_flag=True, help="Overwrite an existing configuration file.")
@click.option("--no-db", is_flag=True, help="Do not create the database now.")
@json_option
def init(  # noqa: PLR0917 -- one parameter per click option
    store_id: str, mqtt_url: str | None, central_url: str | None, db_path: Path | None,
         socket_path: Path | None, store_name: str | None, force: bool, no_db: bool) -> None:
    """Create the configuration from the example and the database (first epoch)."""
    st = state()
    path = st.resolved_config_path
    if path.exists() and not force:
        raise CliError(f"{path} already exists; nothing changed",
                       hint="use --force to overwrite, or --config for another path")
    text = render_config(store_id, mqtt_url=mqtt_url, central_url=central_url, db_path=db_path,
                         socket_path=socket_path, store_name=store_name)
    try:
        config = validate(text, path)
    except ConfigError as exc:
        raise CliError(f"the new configuration would be invalid: {exc}", code=EXIT_USAGE) from exc
    remarks = write_private(path, text)
    result: dict[str, Any] = {"config": str(path), "store": store_id,
                              "database": str(config.database.path), "created_db": False,
                              "epoch": None, "remarks": remarks}
    if not no_db:
        with Ledger.open(config.database.path, store_id) as ledger:
            result["created_db"] = ledger.is_new
            result["epoch"] = ledger.current_epoch
    checks = [check_config_permissions(config), check_state_dir(config)]
    result["checks"] = [c.as_dict() for c in checks]
    if st.json:
        emit_json(result)
    else:
        click.echo(f"wrote {path} (store {store_id}, mode 0640)")
        if not no_db:
            what = "created" if result["created_db"] else "kept the existing"
            click.echo(f"{what} database {config.database.path} (epoch {result['epoch']})")
        for remark in remarks:
            note(f"note: {remark}")
        for check in checks:
            click.echo(f"{check.status:>4}  {check.name}: {check.detail}"
                       + (f" — fix: {check.fix}" if check.fix else ""))
        click.echo("next: put secrets in /etc/credstore/edge-agent/ (mqtt-password, "
                   "central-token), add [[devices]], then `edge-agent doctor`")
    if any(c.status == "fail" for c in checks):
        sys.exit(EXIT_FAILED)


# -- status -------------------------------------------------------------------------------------
def _age(seconds: Any) -> str | None:
    if not isinstance(seconds, int | float):
        return None
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


@cli.command()
@json_option
def status() -> None:
    """Agent state, broker link, outbox backlog, epoch, devices and clock offset."""
    data, live = daemon_or_db(lambda c: c.get("/v1/status"), local.status)
    data = dict(data)
    data["source"] = "daemon" if live else "database"
    if state().json:
        emit_json(data)
        return
    broker = data.get("broker") or {}
    outbox = data.get("outbox") or {}
    devices = data.get("devices") or {}
    db = data.get("db") or {}
    epoch = str(data.get("epoch") or "")
    link = "connected" if broker.get("connected") else "NOT connected"
    if broker.get("stalled_s"):
        link += f" (the broker has not answered for {broker['stalled_s']:g} s)"
    if broker.get("reconnects"):
        link += f", {broker.get('reconnects')} reconnects"
    free = db.get("disk_free_bytes")
    kv_table(f"edge-agent {data.get('version', '')} — store {data.get('store')}", [
        ("state", data.get("state")),
        ("source", "the running agent" if live else "the database (agent not running)"),
        ("uptime", _age(data.get("uptime_s"))),
        ("boot id", data.get("boot_id")),
        ("epoch", f"{epoch} (last seq {data.get('last_seq')})"),
        ("broker", link),
        ("last broker error", broker.get("last_error")),
        ("last ack", iso(broker.get("last_ack_at"))),
        ("outbox pending", outbox.get("pending")),
        ("oldest pending", (_age(outbox.get("oldest_age_s")) or "—")
         + (f" ({iso(outbox.get('oldest_ts'))})" if outbox.get("oldest_ts") else "")),
        ("applied cseq", data.get("applied_cseq")),
        ("resync needed", "yes" if data.get("resync_needed") else "no"),
        ("devices", f"{devices.get('connected', 0)}/{devices.get('total', 0)} connected"),
        ("clock offset", f"{data['clock_offset_ms']} ms"
         if data.get("clock_offset_ms") is not None else None),
        ("database", f"{db.get('bytes', 0)} B, WAL {db.get('wal_bytes', 0)} B, "
                     + (f"{free // (1024 * 1024)} MiB free" if free is not None
                        else "free space unknown")),
    ])
    items = devices.get("items") or []
    if items:
        table("devices", ["name", "kind", "state", "detail"],
              [(d.get("name"), d.get("kind"), d.get("state"), d.get("detail")) for d in items])
    counters = data.get("counters") or {}
    if counters:
        table("counters", ["name", "value"], sorted(counters.items()))


# -- doctor -------------------------------------------------------------------------------------
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _agent_status(config: Config) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = client_for(config).get("/v1/status")
    except CliError as exc:
        return None, exc.message
    return (data if isinstance(data, dict) else None), None


@cli.command()
@click.option("--offline", is_flag=True, help="Skip the broker and central checks.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Seconds for each network check.")
@json_option
def doctor(offline: bool, timeout: float) -> None:
    """Run every check (config, database, disk, devices, broker, ACL, central, clock,
    systemd) and print each with a plain-language fix. Exit 1 when one fails."""
    st = state()
    results = run_checks(st.config_path, agent_status=_agent_status, network=not offline,
                         timeout=timeout)
    verdict = worst(results)
    if st.json:
        emit_json({"result": verdict, "checks": [r.as_dict() for r in results]})
    else:
        out = console()
        for r in results:
            line = Text()
            line.append(f"{r.status.upper():>4}", style=_STYLE[r.status])
            line.append(f"  {r.name}: {r.detail}")
            out.print(line)
            if r.fix and r.status in ("warn", "fail"):
                out.print(Text(f"      fix: {r.fix}", style="italic"))
        fails = sum(r.status == "fail" for r in results)
        warns = sum(r.status == "warn" for r in results)
        out.print(f"\n{len(results)} checks: {fails} failed, {warns} warnings")
    if verdict == "fail":
        sys.exit(EXIT_FAILED)


# -- simulate -----------------------------------------------------------------------------------
@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def simulate(args: tuple[str, ...]) -> None:
    """Simulated store devices on pseudo-terminals (demo and tests). Arguments go to the
    simulator: --dir, --config-out, --codes, --interval, --no-demo; `simulate --help`.
    With --json the devices are printed as one JSON object instead of TOML."""
    simulator = importlib.import_module("drivers.simulator_cli")
    extra = ["--json"] if state().json else []
    simulator.main([*args, *extra], prog="edge-agent simulate")


# -- config -------------------------------------------------------------------------------------
@cli.group(name="config")
def config_group() -> None:
    """Check or show the configuration (secrets are never shown)."""


@config_group.command(name="check")
@json_option
def config_check() -> None:
    """Validate the configuration file; list every problem (exit 2 when invalid)."""
    st = state()
    path = st.resolved_config_path
    try:
        config = st.config()
    except ConfigError as exc:
        if st.json:
            emit_json({"config": str(path), "valid": False,
                       "problems": exc.problems or [str(exc)]})
            sys.exit(EXIT_USAGE)
        raise CliError(str(exc), code=EXIT_USAGE,
                       hint="fix the keys listed above and run it again; every key is "
                            "explained in config/agent.example.toml") from exc
    if st.json:
        emit_json({"config": str(path), "valid": True, "store": config.store.id,
                   "devices": len(config.devices)})
    else:
        click.echo(f"{path}: valid (store {config.store.id}, {len(config.devices)} device(s))")


@config_group.command(name="show")
@json_option
def config_show() -> None:
    """Print the effective configuration with defaults, secrets redacted."""
    st = state()
    data = st.config().redacted()
    if st.json:
        emit_json(data)
        return
    for section, values in data.items():
        if isinstance(values, dict):
            kv_table(f"[{section}]", [(k, _show(v)) for k, v in values.items()])
        elif isinstance(values, list):
            table(f"[[{section}]]", ["#", "settings"],
                  [(i, ", ".join(f"{k}={_show(v)}" for k, v in item.items()))
                   for i, item in enumerate(values)])


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    return "—" if value is None else str(value)
