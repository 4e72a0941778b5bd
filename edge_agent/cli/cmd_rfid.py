"""``rfid count open|show|close|cancel|list`` and ``rfid accuracy``: RFID counts from the
technician's terminal (daemon required for counts; accuracy falls back to the database)."""

from __future__ import annotations

import sqlite3
from typing import Any

import click

from edge_agent.cli._base import emit_json, json_option, kv_table, state, table
from edge_agent.cli.app import cli
from edge_agent.cli.cmd_core import client_for, daemon_or_db
from edge_agent.config import Config
from edge_agent.ledger.schema import connect
from edge_agent.rfid.store import accuracy_rows


@cli.group(name="rfid")
def rfid_group() -> None:
    """Item-level RFID: counts by reading tags, per-SKU count accuracy."""


@rfid_group.group(name="count")
def count_group() -> None:
    """Open a count, watch it, close it (the cut-off), or cancel it."""


def _show(data: dict[str, Any]) -> None:
    if state().json:
        emit_json(data)
        return
    kv_table(f"RFID count {data.get('count_id')}", [
        ("status", data.get("status")),
        ("zones", ", ".join(data.get("zones") or []) or "whole store"),
        ("opened", data.get("opened_at")),
        ("counted at", data.get("counted_at")),
        ("reads", data.get("reads")),
        ("distinct tags", data.get("tags")),
        ("sold during the count (not counted)", data.get("sold_excluded")),
        ("non-SGTIN reads", data.get("non_sgtin_reads")),
    ])
    if data.get("per_gtin"):
        table("tags per GTIN", ["gtin", "tags"], sorted(data["per_gtin"].items()))
    if data.get("lines"):
        table("counted per SKU", ["sku", "counted", "expected", "variance"],
              [(x["sku"], x["counted"], x["expected"], f"{x['variance']:+d}")
               for x in data["lines"]])
    if data.get("unknown_gtins"):
        table("tags of GTINs not in the catalog", ["gtin", "tags"],
              [(x["gtin"], x["tags"]) for x in data["unknown_gtins"]])


@count_group.command(name="open")
@click.option("--zone", "zones", multiple=True, metavar="ZONE",
              help="A zone to count (repeat for several); none: the whole store.")
@click.option("--id", "count_id", default=None, help="The count's id (default: a new UUID).")
@json_option
def count_open(zones: tuple[str, ...], count_id: str | None) -> None:
    """Start counting: every tag the zones' inventory readers read is counted once."""
    body: dict[str, Any] = {"zones": list(zones) if zones else None}
    if count_id:
        body["count_id"] = count_id
    _show(client_for(state().config()).post("/v1/rfid/counts", body))


# count show|close|cancel COUNT_ID: one call each to the count's own route, shown alike.
_COUNT_ACTIONS = (
    ("show", "", "An open count's progress, or a closed count's result."),
    ("close", "/close",
     "Close now and record the count (one line per SKU; the variance adjusts stock)."),
    ("cancel", "/cancel", "Drop an open count without recording anything."),
)


def _count_action(name: str, suffix: str, doc: str) -> None:
    @count_group.command(name=name, help=doc)
    @click.argument("count_id")
    @json_option
    def action(count_id: str) -> None:
        client = client_for(state().config())
        path = f"/v1/rfid/counts/{count_id}{suffix}"
        _show(client.post(path) if suffix else client.get(path))


for _action in _COUNT_ACTIONS:
    _count_action(*_action)


@count_group.command(name="list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
def count_list(limit: int) -> None:
    """The latest counts, open ones first by time."""
    data = client_for(state().config()).get("/v1/rfid/counts", limit=limit)
    if state().json:
        emit_json(data)
        return
    table("RFID counts", ["count", "status", "zones", "tags", "opened"],
          [(c["count_id"], c["status"], ", ".join(c.get("zones") or []) or "store",
            c.get("tags", (c.get("result") or {}).get("tags")), c.get("opened_at"))
           for c in data["counts"]])


def _accuracy_from_db(config: Config, sku: str | None) -> dict[str, Any]:
    conn = connect(config.database.path, readonly=True)
    try:
        return {"skus": accuracy_rows(conn, sku)}
    except sqlite3.OperationalError:  # a database from before the RFID tables
        return {"skus": []}
    finally:
        conn.close()


@rfid_group.command(name="accuracy")
@click.option("--sku", default=None, help="Only this SKU.")
@json_option
def accuracy(sku: str | None) -> None:
    """Per SKU: when it was last counted by RFID, and that count's variance."""
    data, _live = daemon_or_db(lambda c: c.get("/v1/rfid/accuracy", sku=sku),
                               lambda cfg: _accuracy_from_db(cfg, sku))
    if state().json:
        emit_json(data)
        return
    table("RFID count accuracy", ["sku", "last counted", "counted", "expected", "variance"],
          [(x["sku"], x["last_counted_at"], x["counted"], x["expected"], f"{x['variance']:+d}")
           for x in data["skus"]])
