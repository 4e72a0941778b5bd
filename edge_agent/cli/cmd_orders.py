"""``orders`` (list) and ``orders show ID``: the store's fulfilment queue for a technician,
from the daemon, or read-only from the database when the daemon is down."""

from __future__ import annotations

import sqlite3
from typing import Any

import click

from edge_agent.cli import local
from edge_agent.cli._base import CliError, emit_json, json_option, kv_table, state, table
from edge_agent.cli.app import cli
from edge_agent.cli.cmd_core import daemon_or_db
from edge_agent.config import Config
from edge_agent.errors import OperationError
from edge_agent.orders.machine import STATUSES
from edge_agent.orders.store import read_order, read_orders
from edge_agent.retail.catalog import conn_query

STATUS_CHOICES = ("open", "all", *STATUSES)


def _has_queue(conn: sqlite3.Connection) -> bool:
    """A database the agent has not migrated yet has no ``orders`` table: an empty queue."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'orders'").fetchone() is not None


def _local_list(config: Config, status: str, limit: int) -> dict[str, Any]:
    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        items = read_orders(conn_query(conn), status, limit) if _has_queue(conn) else []
        return {"status": status, "count": len(items), "orders": items}
    return local.read(config, fn)


def _local_show(config: Config, order_id: str) -> dict[str, Any]:
    def fn(conn: sqlite3.Connection) -> dict[str, Any]:
        if not _has_queue(conn):
            raise OperationError("order_not_found", f"no order {order_id} at this store",
                                 status=404)
        return read_order(conn_query(conn), order_id)
    try:
        return local.read(config, fn)
    except OperationError as exc:
        raise CliError(str(exc), hint="`edge-agent orders --status all` lists every order"
                       ) from exc


def _progress(order: dict[str, Any]) -> str:
    lines = order.get("lines") or []
    return f"{sum(x['picked'] for x in lines)}/{sum(x['qty'] for x in lines)}"


@cli.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(STATUS_CHOICES), default="open", show_default=True,
              help="open (not yet handed over, rejected or cancelled), all, or one state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True)
@json_option
@click.pass_context
def orders(ctx: click.Context, status: str, limit: int) -> None:
    """The fulfilment queue: online orders central assigned to this store."""
    if ctx.invoked_subcommand is not None:
        return
    data, _ = daemon_or_db(lambda c: c.get("/v1/orders", status=status, limit=limit),
                           lambda cfg: _local_list(cfg, status, limit))
    if state().json:
        emit_json(data)
        return
    items = data.get("orders") or []
    table(f"orders ({status}): {len(items)}",
          ["order", "status", "fulfilment", "channel", "picked", "accept by", "received"],
          [(o.get("order_id"), o.get("status"), o.get("fulfilment"), o.get("channel"),
            _progress(o), (o.get("accept_by") or "") + (" (overdue)" if o.get("accept_overdue")
                                                        else ""),
            o.get("received_at")) for o in items])


@orders.command(name="show")
@click.argument("order_id")
@json_option
def show(order_id: str) -> None:
    """One order: its lines with what is picked, and its history."""
    data, _ = daemon_or_db(lambda c: c.get(f"/v1/orders/{order_id}"),
                           lambda cfg: _local_show(cfg, order_id))
    if state().json:
        emit_json(data)
        return
    kv_table(f"order {order_id}", [
        (k, data.get(k)) for k in ("status", "reservation_id", "fulfilment", "channel",
                                   "customer_ref", "accept_by", "pickup_code_required",
                                   "reason", "tracking", "parcels", "received_at",
                                   "updated_at")])
    table("lines", ["#", "sku", "name", "qty", "picked"],
          [(x.get("line_no"), x.get("sku"), x.get("name"), x.get("qty"), x.get("picked"))
           for x in data.get("lines") or []])
    table("history", ["status", "at", "seq", "detail"],
          [(h.get("status"), h.get("at"), h.get("seq"),
            ", ".join(f"{k}={v}" for k, v in h.items() if k not in ("status", "at", "seq")))
           for h in data.get("history") or []])
