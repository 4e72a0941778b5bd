"""``edge-central atp …`` and ``edge-central orders …``: the omnichannel loop from a shell,
over the central's HTTP API (the operator token, like every other command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from central.cli_client import api_options, echo_call, route_command


@click.group()
def atp() -> None:
    """Available-to-promise per SKU, per store and for the network."""


@atp.command("get")
@api_options
@click.argument("skus", nargs=-1, required=True)
@click.option("--store", "stores", multiple=True, help="Show these stores' figures.")
@click.option("--detail", is_flag=True, help="Every store's figures.")
def atp_get(url: str, token_file: Path | None, skus: tuple[str, ...],
            stores: tuple[str, ...], *, detail: bool) -> None:
    """ATP of SKUS (network, and per store with --detail or --store)."""
    params: list[tuple[str, Any]] = [("sku", s) for s in skus]
    params += [("store", s) for s in stores]
    if detail:
        params.append(("detail", "true"))
    echo_call(url, token_file, "GET", "/v1/atp", params=params)


@atp.command("changes")
@api_options
@click.option("--since", default=None, help="Cursor from the previous answer.")
def atp_changes(url: str, token_file: Path | None, since: str | None) -> None:
    """SKUs and stores whose ATP changed since a cursor (no cursor: the current one)."""
    params = {"since": since} if since else {}
    echo_call(url, token_file, "GET", "/v1/atp/changes", params=params)


@atp.command("store")
@api_options
@click.argument("store")
@click.option("--lat", type=float, default=None)
@click.option("--lon", type=float, default=None)
@click.option("--capacity", "capacity_per_day", type=int, default=None,
              help="Orders per day the store may take.")
@click.option("--closed/--open", default=False, show_default=True)
@click.option("--fulfilling/--not-fulfilling", default=True, show_default=True)
@click.option("--safety-stock", type=int, default=None)
def atp_store(url: str, token_file: Path | None, store: str, **attrs: Any) -> None:
    """Set a store's brokering attributes (replaces the configured ones)."""
    echo_call(url, token_file, "PUT", f"/v1/omni/stores/{store}", json=attrs)


@click.group()
def orders() -> None:
    """Online orders brokered to stores."""


@orders.command("list")
@api_options
@click.option("--state", default=None, help="queued, brokered, accepted, … cancelled.")
@click.option("--limit", default=100, show_default=True)
def orders_list(url: str, token_file: Path | None, state: str | None, limit: int) -> None:
    """The latest online orders, optionally in one state."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    echo_call(url, token_file, "GET", "/v1/orders", params=params)


route_command(orders, "show", "GET", "/v1/orders/{order_id}",
              "One order: its request, state, assignments and history.", argument="order_id")


@orders.command("create")
@api_options
@click.argument("file", type=click.File("r"))
def orders_create(url: str, token_file: Path | None, file: Any) -> None:
    """Submit an order from a JSON file ('-' for stdin), as POST /v1/orders takes it."""
    text = file.read()
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name}: not JSON: {exc}") from exc
    echo_call(url, token_file, "POST", "/v1/orders", json=body)


@orders.command("cancel")
@api_options
@click.argument("order_id")
@click.option("--reason", type=click.Choice(["customer", "operator"]), default="operator",
              show_default=True)
def orders_cancel(url: str, token_file: Path | None, order_id: str, reason: str) -> None:
    """Cancel an order (its reservations are released at the store)."""
    echo_call(url, token_file, "POST", f"/v1/orders/{order_id}/cancel",
              json={"reason": reason})
