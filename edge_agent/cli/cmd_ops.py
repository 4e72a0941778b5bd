"""``outbox``, ``sync now|resync|watch``, ``stock``, ``sales``, ``visitors``."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from edge_agent.cli import local
from edge_agent.cli._base import (
    emit_json,
    json_option,
    kv_table,
    state,
    table,
)
from edge_agent.cli.app import cli
from edge_agent.cli.cmd_core import _age, client_for, daemon_or_db
from edge_agent.cli.human import event_line, iso, now_iso


# -- outbox -------------------------------------------------------------------------------------
@cli.command()
@click.option("--limit", type=click.IntRange(0, 10_000), default=20, show_default=True,
              help="How many pending events to list.")
@json_option
def outbox(limit: int) -> None:
    """Events not yet acknowledged by central: count, oldest, and the first --limit."""
    data, _live = daemon_or_db(lambda c: c.get("/v1/outbox", limit=limit),
                               lambda cfg: local.outbox(cfg, limit))
    data = dict(data)
    if "items" not in data:  # the API lists them as "events"
        data["items"] = data.pop("events", [])
    if data.get("oldest_age_s") is None:
        data["oldest_age_s"] = local.age_s(data.get("oldest_ts"))
    if state().json:
        emit_json(data)
        return
    kv_table("outbox", [
        ("pending", data.get("pending")),
        ("oldest", iso(data.get("oldest_ts"))),
        ("oldest age", _age(data.get("oldest_age_s"))),
    ])
    epochs = data.get("epochs") or []
    if epochs:
        table("per-epoch watermarks", ["epoch", "last seq", "acked seq", "pending"],
              [(e.get("epoch"), e.get("last_seq"), e.get("acked_seq"),
                e.get("pending", max(0, (e.get("last_seq") or 0) - (e.get("acked_seq") or 0))))
               for e in epochs])
    items = data.get("items") or []
    if items:
        table(f"first {len(items)} pending", ["epoch", "seq", "type", "ts", "bytes"],
              [(str(i.get("epoch", ""))[:8], i.get("seq"), i.get("type"), iso(i.get("ts")),
                i.get("bytes")) for i in items])


# -- sync ---------------------------------------------------------------------------------------
@cli.group(name="sync")
def sync_group() -> None:
    """Push the outbox now, resync from central, or watch acks and commands live."""


@sync_group.command(name="now")
@json_option
def sync_now() -> None:
    """Ask the agent to send its pending events now (daemon required)."""
    _ask_agent("/v1/sync/now", "sync")


@sync_group.command(name="resync")
@json_option
def sync_resync() -> None:
    """Ask the agent to fetch central's snapshot and resync (daemon required)."""
    _ask_agent("/v1/sync/resync", "resync", "; follow it with `edge-agent sync watch`")


def _ask_agent(path: str, what: str, then: str = "") -> None:
    """POST ``path`` to the agent; show its answer (or ``<what> requested``)."""
    data = client_for(state().config()).post(path)
    if state().json:
        emit_json(data if data is not None else {"ok": True})
    else:
        click.echo(f"{what} requested" + (f": {_short(data)}" if data else "") + then)


def _short(data: Any) -> str:
    if isinstance(data, dict):
        return ", ".join(f"{k}={v}" for k, v in data.items())
    return str(data)


_WATCHED = ("state", "last_seq", "applied_cseq", "resync_needed")


def _watch_fields(status: dict[str, Any]) -> dict[str, Any]:
    broker = status.get("broker") or {}
    outbox_ = status.get("outbox") or {}
    out = {k: status.get(k) for k in _WATCHED}
    out.update(connected=broker.get("connected"), last_ack_at=broker.get("last_ack_at"),
               pending=outbox_.get("pending"))
    return out


@sync_group.command(name="watch")
@click.option("--interval", type=float, default=2.0, show_default=True,
              help="Seconds between two looks at the agent's status.")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@json_option
def sync_watch(interval: float, duration: float | None) -> None:
    """Live acknowledgements and commands: prints each change of the broker link, last
    ack, outbox backlog, last seq and applied cseq (polling the agent's status)."""
    st = state()
    client = client_for(st.config())
    deadline = None if duration is None else time.monotonic() + duration
    previous: dict[str, Any] | None = None
    while deadline is None or time.monotonic() < deadline:
        current = _watch_fields(client.get("/v1/status"))
        if current != previous:
            changed = {k: v for k, v in current.items()
                       if previous is None or previous.get(k) != v}
            _print_event("status", changed, st.json)
            previous = current
        time.sleep(interval)


def _print_event(event: str, data: Any, as_json: bool) -> None:
    """One line per change; --json: one JSON object per line (as devices tail)."""
    if as_json:
        click.echo(json.dumps({"ts": now_iso(), "event": event, "data": data},
                              separators=(",", ":"), ensure_ascii=False, default=str))
    else:
        click.echo(event_line(event, data))


# -- stock --------------------------------------------------------------------------------------
@cli.command()
@click.argument("target", metavar="SKU|low")
@click.option("--threshold", type=int, default=None,
              help="For `stock low`: available at or below this "
                   "(default store.low_stock_threshold).")
@json_option
def stock(target: str, threshold: int | None) -> None:
    """Stock of one SKU (`stock SKU`), or every SKU at or below the threshold (`stock low`)."""
    st = state()
    if target == "low":
        limit = st.config().store.low_stock_threshold if threshold is None else threshold
        data, _ = daemon_or_db(lambda c: c.get("/v1/stock/low", threshold=threshold),
                               lambda cfg: local.stock_low(cfg, limit))
        if st.json:
            emit_json(data)
            return
        items = data.get("items", data) if isinstance(data, dict) else data
        table(f"low stock (≤ {data.get('threshold', limit) if isinstance(data, dict) else limit})",
              ["sku", "name", "on hand", "reserved", "available"],
              [(i.get("sku"), i.get("name"), i.get("on_hand"), i.get("reserved"),
                i.get("available")) for i in items])
        return
    data, _ = daemon_or_db(lambda c: c.get(f"/v1/stock/{target}"),
                           lambda cfg: local.stock(cfg, target))
    if st.json:
        emit_json(data)
        return
    kv_table(f"stock {target}", list(data.items()))


# -- sales, visitors ------------------------------------------------------------------------------
def _today(tz_name: str) -> date:
    try:
        return datetime.now(ZoneInfo(tz_name)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.now(ZoneInfo("UTC")).date()


@cli.command()
@click.option("--today", "today", is_flag=True, help="Today's sales (store time zone).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Sales of this day (YYYY-MM-DD).")
@json_option
def sales(today: bool, day: datetime | None) -> None:
    """Sales summary of a day: count, total, units, returns, per terminal."""
    st = state()
    config = st.config()
    if day is not None and today:
        raise click.UsageError("give --today or --date, not both")
    when = day.date() if day is not None else _today(config.store.timezone)
    # The ledger's sale events are the record; reading them read-only is safe while the
    # agent runs, so this command never needs the daemon.
    data = local.sales(config, when)
    if st.json:
        emit_json(data)
        return
    flat = [(k, v) for k, v in data.items() if not isinstance(v, dict | list)]
    kv_table(f"sales {when.isoformat()}", flat)
    terminals = data.get("by_terminal") or {}
    if terminals:
        table("per terminal", ["terminal", "sales", "total"],
              [(k, v.get("sales"), v.get("total")) for k, v in terminals.items()])


@cli.command()
@click.option("--today", "today", is_flag=True, default=True,
              help="Today's visitors (the default and only period).")
@json_option
def visitors(today: bool) -> None:
    """Today's visitors: visits, dwell time and door counts (pseudonymous, PROTOCOL §10)."""
    del today
    st = state()
    data, _ = daemon_or_db(lambda c: c.get("/v1/visitors/today"), local.visitors_today)
    if st.json:
        emit_json(data)
        return
    flat = [(k, v) for k, v in data.items() if not isinstance(v, dict | list)]
    kv_table("visitors today", flat)
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            cols = list(value[0].keys())
            table(key, cols, [[row.get(c) for c in cols] for row in value])
        elif isinstance(value, dict):
            kv_table(key, list(value.items()))
