"""``edge-central customers …``: the customer registry over the operator API.

The phone number given to ``register`` goes to the local central in the request body
only; it is never echoed back (the answers mask identifiers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from central.cli_client import api_options, echo_call, route_command


def _body(*, name: str | None, phone: str | None, region: str | None,
          cards: tuple[str, ...], tags: tuple[str, ...], recognition: bool | None,
          marketing: bool | None, tier: str | None, points: int | None,
          wishlist: tuple[str, ...], viewed: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {key: value for key, value in (
        ("name", name), ("phone", phone), ("region", region)) if value is not None}
    if cards:
        body["cards"] = list(cards)
    if tags:
        body["tags"] = list(tags)
    consent = {k: v for k, v in (("recognition", recognition), ("marketing", marketing))
               if v is not None}
    if consent:
        body["consent"] = consent
    if tier is not None or points is not None:
        body["loyalty"] = {"tier": tier or "", "points": points or 0}
    if wishlist:
        body["wishlist"] = list(wishlist)
    if viewed:
        body["recently_viewed"] = list(viewed)
    return body


def _profile_options(fn: Any) -> Any:
    for option in reversed((
        click.option("--name", default=None, help="Display name (nickname)."),
        click.option("--phone", default=None, help="Phone number, +… or national."),
        click.option("--region", default=None, help="Region of a national number, e.g. FR."),
        click.option("--card", "cards", multiple=True, help="Loyalty card number."),
        click.option("--tag", "tags", multiple=True, help="Loyalty tag id."),
        click.option("--recognition/--no-recognition", default=None,
                     help="Consent to be recognised in stores."),
        click.option("--marketing/--no-marketing", default=None, help="Marketing consent."),
        click.option("--tier", default=None, help="Loyalty tier."),
        click.option("--points", type=int, default=None, help="Loyalty points."),
        click.option("--wishlist", multiple=True, help="A wishlist SKU."),
        click.option("--viewed", multiple=True, help="A recently viewed SKU."),
    )):
        fn = option(fn)
    return fn


@click.group()
def customers() -> None:
    """The customer registry: register, update, withdraw consent, value index."""


@customers.command("register")
@api_options
@click.option("--ref", default=None, help="Customer reference (default: generated).")
@_profile_options
def register(url: str, token_file: Path | None, ref: str | None, **fields: Any) -> None:
    """Register a customer (give --recognition for them to be recognised in stores)."""
    body = _body(**fields)
    if ref:
        body["ref"] = ref
    echo_call(url, token_file, "POST", "/v1/customers", json=body)


@customers.command("update")
@api_options
@click.argument("ref")
@_profile_options
def update(url: str, token_file: Path | None, ref: str, **fields: Any) -> None:
    """Change a customer's name, identifiers, consent or online context."""
    echo_call(url, token_file, "PATCH", f"/v1/customers/{ref}", json=_body(**fields))


for _name, _method, _suffix, _summary in (
    ("withdraw", "POST", "/withdraw",
     "Withdraw recognition consent: every store drops the customer at its next sync."),
    ("erase", "DELETE", "",
     "Erase a customer, their identifiers and history (right to erasure)."),
    ("show", "GET", "", "A customer's profile, value index and cross-channel history."),
):
    route_command(customers, _name, _method, "/v1/customers/{ref}" + _suffix, _summary,
                  argument="ref")


@customers.command("list")
@api_options
@click.option("--limit", type=int, default=100, show_default=True)
def list_(url: str, token_file: Path | None, limit: int) -> None:
    """Registered customers."""
    echo_call(url, token_file, "GET", "/v1/customers", params={"limit": limit})


@customers.command("order")
@api_options
@click.argument("ref")
@click.option("--order-ref", required=True)
@click.option("--total", required=True, help="Decimal amount, e.g. 129.90.")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--status", default="placed", show_default=True)
def order(url: str, token_file: Path | None, ref: str, *, order_ref: str, total: str,
          currency: str, status: str) -> None:
    """Record an online order in the customer's history."""
    echo_call(url, token_file, "POST", f"/v1/customers/{ref}/online-orders",
              json={"order_ref": order_ref, "total": total, "currency": currency, "status": status})


@customers.command("push")
@api_options
def push(url: str, token_file: Path | None) -> None:
    """Send every store the pepper and every consenting customer (run daily)."""
    echo_call(url, token_file, "POST", "/v1/customers/push")


@customers.command("rotate-key")
@api_options
def rotate_key(url: str, token_file: Path | None) -> None:
    """Rotate the chain's pepper; stores re-hash and drop the old key in one sync."""
    echo_call(url, token_file, "POST", "/v1/customers/keys/rotate")
