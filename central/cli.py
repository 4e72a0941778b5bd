"""``edge-central``: run the reference central, and operate it over its HTTP API."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import orjson

from central.cli_client import (
    CentralGroup,
    Options,
    api,
    json_option,
    out,
    store_option,
    token_option,
    url_option,
)
from central.cli_db import db
from central.cli_output import Failure, UsageFailure
from central.cli_recall import recall
from central.customer_cli import customers
from central.errors import CentralError
from central.omni_cli import atp, orders
from sync.files import restrict_umask


def _version() -> str:
    try:
        return metadata.version("edge-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


@click.group(cls=CentralGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Exit codes: 0 ok; 1 refused or failed; 2 usage or configuration error; "
                    "3 central unreachable.")
@url_option
@token_option
@json_option
@click.version_option(_version(), "-V", "--version", prog_name="edge-central")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Reference central service of the edge-agent sync protocol (PROTOCOL v1).

    `serve` runs it; the other commands operate a running central over its HTTP API and
    print tables (--json for machines).
    """
    restrict_umask()  # files 0640, directories 0750 or stricter, whatever the caller's umask
    ctx.ensure_object(Options)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="TOML configuration file.")
@click.option("--database-url", default=None, help="Override database_url.")
@click.option("--log-level", default="INFO", show_default=True)
def serve(config_path: Path | None, database_url: str | None, log_level: str) -> None:
    """Run the central: MQTT ingest, group commit, acks, commands, HTTP API."""
    from central.config import load_config  # noqa: PLC0415 - keep the client CLI light
    from central.main import serve as run  # noqa: PLC0415

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(config_path, {"database_url": database_url})
    except CentralError as exc:
        raise UsageFailure(str(exc), hint="`edge-central check-config --config FILE` "
                                          "checks a file") from exc
    try:
        asyncio.run(run(config))
    except CentralError as exc:
        raise Failure(str(exc)) from exc


@main.command("check-config")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True)
def check_config(config_path: Path) -> None:
    """Validate a configuration file and print it (secrets redacted)."""
    from central.config import load_config  # noqa: PLC0415

    try:
        data = load_config(config_path).redacted()
    except CentralError as exc:
        raise UsageFailure(str(exc)) from exc
    out(data, title=f"{config_path}: valid")


@main.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("docs/schemas"), show_default=True)
def schemas(out_dir: Path) -> None:
    """Write the JSON Schemas of every protocol message."""
    from central.schemas import write_schemas  # noqa: PLC0415

    for path in write_schemas(out_dir):
        click.echo(str(path))


@main.command()
@click.option("--store", default=None, help="One store in detail.")
def status(store: str | None) -> None:
    """Central counters and every store's status (or one store in detail)."""
    out(api().call("GET", f"/v1/stores/{store}" if store else "/v1/status"))


@main.command()
@click.option("--store", default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=100, show_default=True)
def alerts(store: str | None, kind: str | None,
           limit: int) -> None:
    """Recent alerts, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if store:
        params["store"] = store
    if kind:
        params["kind"] = kind
    out(api().call("GET", "/v1/alerts", params=params))


@main.command()
@store_option
@click.option("--sku", multiple=True)
def stock(store: str, sku: tuple[str, ...]) -> None:
    """Central's stock for a store (on hand, reserved, available)."""
    params = [("sku", s) for s in sku]
    out(api().call("GET", f"/v1/stores/{store}/stock", params=params))


@main.group()
def command() -> None:
    """Issue commands to a store."""


def _lines(pairs: tuple[str, ...], key: str) -> list[dict[str, Any]]:
    out = []
    for pair in pairs:
        sku, sep, value = pair.rpartition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected SKU={key.upper()}")
        try:
            out.append({"sku": sku, key: int(value)})
        except ValueError as exc:
            raise click.BadParameter(f"{pair!r}: {key} must be an integer") from exc
    return out


@command.command("adjust")
@store_option
@click.option("--sku", default=None)
@click.option("--delta", type=int, default=None)
@click.option("--line", "lines", multiple=True, help="SKU=DELTA, repeatable.")
@click.option("--reason", default="replenishment", show_default=True)
@click.option("--ref", default=None)
def adjust(store: str, *, sku: str | None,
           delta: int | None, lines: tuple[str, ...], reason: str, ref: str | None) -> None:
    """Adjust stock (replenishment, transfer.in, correction …)."""
    body_lines = _lines(lines, "delta")
    if sku is not None:
        if delta is None:
            raise click.UsageError("--sku needs --delta")
        body_lines.append({"sku": sku, "delta": delta})
    if not body_lines:
        raise click.UsageError("give --sku/--delta or --line")
    body = {"lines": body_lines, "reason": reason, "ref": ref}
    out(api().call("POST", f"/v1/stores/{store}/adjust", json=body))


@command.command("count")
@store_option
@click.option("--sku", "skus", multiple=True, required=True)
@click.option("--count-id", default=None)
def count(store: str, skus: tuple[str, ...],
          count_id: str | None) -> None:
    """Ask the store to count SKUs."""
    body = {"skus": list(skus), "count_id": count_id}
    out(api().call("POST", f"/v1/stores/{store}/counts", json=body))


@command.command("resync")
@store_option
def resync(store: str) -> None:
    """Tell the store to replace its state with central's snapshot."""
    out(api().call("POST", f"/v1/stores/{store}/resync"))


@main.group()
def reserve() -> None:
    """Click-and-collect reservations."""


@reserve.command("create")
@store_option
@click.option("--order-ref", required=True)
@click.option("--line", "lines", multiple=True, required=True, help="SKU=QTY, repeatable.")
@click.option("--reservation-id", default=None)
@click.option("--expires-at", default=None, help="RFC 3339 UTC timestamp.")
def reserve_create(store: str, *, order_ref: str,
                   lines: tuple[str, ...], reservation_id: str | None,
                   expires_at: str | None) -> None:
    """Reserve stock at a store for a web order (click-and-collect); the store holds it
    until it is fulfilled, cancelled or expires."""
    body = {"order_ref": order_ref, "lines": _lines(lines, "qty"),
            "reservation_id": reservation_id, "expires_at": expires_at}
    out(api().call("POST", f"/v1/stores/{store}/reservations", json=body))


@reserve.command("cancel")
@store_option
@click.argument("reservation_id")
def reserve_cancel(store: str, reservation_id: str) -> None:
    """Ask the store to release a reservation (it answers with a reservation.released
    event)."""
    out(api().call(
        "DELETE", f"/v1/stores/{store}/reservations/{reservation_id}"))


@main.group()
def catalog() -> None:
    """Catalog management."""


def read_catalog(path: Path) -> list[dict[str, Any]]:
    """Items from JSON (a list, or {"items": [...]}) or CSV with columns
    sku,name,gtins,price,currency,uom,active (gtins separated by '|')."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = orjson.loads(text)
        items = data.get("items") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise UsageFailure(f"{path}: expected a list of items")
        return items
    items = []
    for row in csv.DictReader(io.StringIO(text)):
        item: dict[str, Any] = {k: v.strip() for k, v in row.items() if k and v is not None}
        item["gtins"] = [g for g in item.get("gtins", "").split("|") if g]
        item.setdefault("uom", "unit")
        item["active"] = item.get("active", "true").lower() not in ("false", "0", "no")
        items.append(item)
    return items


@catalog.command("import")
@store_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def catalog_import(store: str, file: Path) -> None:
    """Import a catalog file (CSV or JSON) as catalog.upsert commands ≤ 64 KiB each."""
    items = read_catalog(file)
    out(api().call("POST", f"/v1/stores/{store}/catalog",
                                         json={"items": items}))


@main.group()
def quarantine() -> None:
    """Quarantined events (malformed stock lists)."""


@quarantine.command("list")
@store_option
def quarantine_list(store: str) -> None:
    """Quarantined events of a store (malformed stock lists), unresolved first."""
    out(api().call("GET", f"/v1/stores/{store}/quarantine"))


@quarantine.command("resolve")
@store_option
@click.option("--epoch", required=True)
@click.option("--seq", type=int, required=True)
def quarantine_resolve(store: str, epoch: str,
                       seq: int) -> None:
    """Mark a quarantined event as dealt with (re-enables automatic resync)."""
    out(api().call("POST", f"/v1/stores/{store}/quarantine/resolve",
                                         json={"epoch": epoch, "seq": seq}))


main.add_command(customers)


main.add_command(recall)
main.add_command(db)
main.add_command(atp)
main.add_command(orders)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
