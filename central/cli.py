"""``edge-central``: run the reference central, and operate it over its HTTP API."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from central.customer_cli import customers
from central.errors import CentralError
from sync.files import restrict_umask

DEFAULT_URL = "http://127.0.0.1:8480"
# where `edge-central serve` generates the operator token with the default database_url
DEFAULT_TOKEN_FILE = Path("/var/lib/edge-central/admin.token")


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


class Api:
    """Tiny client of the central's operator API."""

    def __init__(self, url: str, token_file: Path | None) -> None:
        token = os.environ.get("EDGE_CENTRAL_ADMIN_TOKEN")
        if token_file is None and not token and DEFAULT_TOKEN_FILE.exists():
            token_file = DEFAULT_TOKEN_FILE
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise click.ClickException(f"cannot read the admin token {token_file}: "
                                           f"{exc.strerror}") from exc
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach central: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = (f"{body['code']}: {body.get('message')}" if "code" in body
                          else body.get("detail"))
            except (ValueError, AttributeError):
                detail = response.text
            hint = (" (give --token-file: edge-central writes its operator token beside its "
                    "SQLite database, e.g. /var/lib/edge-central/admin.token)"
                    if response.status_code == 401 else "")
            raise click.ClickException(f"HTTP {response.status_code}: {detail}{hint}")
        return response.json()


_url = click.option("--url", envvar="EDGE_CENTRAL_URL", default=DEFAULT_URL, show_default=True,
                    help="Base URL of a running edge-central.")
_token = click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
                      default=None, envvar="EDGE_CENTRAL_ADMIN_TOKEN_FILE",
                      help="File with the admin token (or EDGE_CENTRAL_ADMIN_TOKEN_FILE, or "
                      "the token in EDGE_CENTRAL_ADMIN_TOKEN); default "
                      "/var/lib/edge-central/admin.token when readable.")
_store = click.option("--store", required=True, help="Store id, e.g. S001.")


@click.group()
def main() -> None:
    """Reference central service of the edge-agent sync protocol (PROTOCOL v1)."""
    restrict_umask()  # files 0640, directories 0750 or stricter, whatever the caller's umask


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
        asyncio.run(run(config))
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("check-config")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True)
def check_config(config_path: Path) -> None:
    """Validate a configuration file and print it (secrets redacted)."""
    from central.config import load_config  # noqa: PLC0415

    try:
        _echo_json(load_config(config_path).redacted())
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              default=Path("docs/schemas"), show_default=True)
def schemas(out: Path) -> None:
    """Write the JSON Schemas of every protocol message."""
    from central.schemas import write_schemas  # noqa: PLC0415

    for path in write_schemas(out):
        click.echo(str(path))


@main.command()
@_url
@_token
@click.option("--store", default=None, help="One store in detail.")
def status(url: str, token_file: Path | None, store: str | None) -> None:
    """Central counters and every store's status (or one store in detail)."""
    api = Api(url, token_file)
    _echo_json(api.call("GET", f"/v1/stores/{store}" if store else "/v1/status"))


@main.command()
@_url
@_token
@click.option("--store", default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=100, show_default=True)
def alerts(url: str, token_file: Path | None, store: str | None, kind: str | None,
           limit: int) -> None:
    """Recent alerts, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if store:
        params["store"] = store
    if kind:
        params["kind"] = kind
    _echo_json(Api(url, token_file).call("GET", "/v1/alerts", params=params))


@main.command()
@_url
@_token
@_store
@click.option("--sku", multiple=True)
def stock(url: str, token_file: Path | None, store: str, sku: tuple[str, ...]) -> None:
    """Central's stock for a store (on hand, reserved, available)."""
    params = [("sku", s) for s in sku]
    _echo_json(Api(url, token_file).call("GET", f"/v1/stores/{store}/stock", params=params))


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
@_url
@_token
@_store
@click.option("--sku", default=None)
@click.option("--delta", type=int, default=None)
@click.option("--line", "lines", multiple=True, help="SKU=DELTA, repeatable.")
@click.option("--reason", default="replenishment", show_default=True)
@click.option("--ref", default=None)
def adjust(url: str, token_file: Path | None, store: str, *, sku: str | None,
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
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/adjust", json=body))


@command.command("count")
@_url
@_token
@_store
@click.option("--sku", "skus", multiple=True, required=True)
@click.option("--count-id", default=None)
def count(url: str, token_file: Path | None, store: str, skus: tuple[str, ...],
          count_id: str | None) -> None:
    """Ask the store to count SKUs."""
    body = {"skus": list(skus), "count_id": count_id}
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/counts", json=body))


@command.command("resync")
@_url
@_token
@_store
def resync(url: str, token_file: Path | None, store: str) -> None:
    """Tell the store to replace its state with central's snapshot."""
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/resync"))


@main.group()
def reserve() -> None:
    """Click-and-collect reservations."""


@reserve.command("create")
@_url
@_token
@_store
@click.option("--order-ref", required=True)
@click.option("--line", "lines", multiple=True, required=True, help="SKU=QTY, repeatable.")
@click.option("--reservation-id", default=None)
@click.option("--expires-at", default=None, help="RFC 3339 UTC timestamp.")
def reserve_create(url: str, token_file: Path | None, store: str, *, order_ref: str,
                   lines: tuple[str, ...], reservation_id: str | None,
                   expires_at: str | None) -> None:
    body = {"order_ref": order_ref, "lines": _lines(lines, "qty"),
            "reservation_id": reservation_id, "expires_at": expires_at}
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/reservations", json=body))


@reserve.command("cancel")
@_url
@_token
@_store
@click.argument("reservation_id")
def reserve_cancel(url: str, token_file: Path | None, store: str, reservation_id: str) -> None:
    _echo_json(Api(url, token_file).call(
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
            raise click.ClickException(f"{path}: expected a list of items")
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
@_url
@_token
@_store
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def catalog_import(url: str, token_file: Path | None, store: str, file: Path) -> None:
    """Import a catalog file (CSV or JSON) as catalog.upsert commands ≤ 64 KiB each."""
    items = read_catalog(file)
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/catalog",
                                         json={"items": items}))


@main.group()
def quarantine() -> None:
    """Quarantined events (malformed stock lists)."""


@quarantine.command("list")
@_url
@_token
@_store
def quarantine_list(url: str, token_file: Path | None, store: str) -> None:
    _echo_json(Api(url, token_file).call("GET", f"/v1/stores/{store}/quarantine"))


@quarantine.command("resolve")
@_url
@_token
@_store
@click.option("--epoch", required=True)
@click.option("--seq", type=int, required=True)
def quarantine_resolve(url: str, token_file: Path | None, store: str, epoch: str,
                       seq: int) -> None:
    """Mark a quarantined event as dealt with (re-enables automatic resync)."""
    _echo_json(Api(url, token_file).call("POST", f"/v1/stores/{store}/quarantine/resolve",
                                         json={"epoch": epoch, "seq": seq}))


main.add_command(customers)


def _register_groups() -> None:
    # cli_recall imports this module's Api and options, so it is imported after them.
    from central.cli_db import db  # noqa: PLC0415
    from central.cli_recall import recall  # noqa: PLC0415

    main.add_command(recall)
    main.add_command(db)


def _omnichannel_commands() -> None:
    from central.omni_cli import atp, orders  # noqa: PLC0415 - they import this module

    main.add_command(atp)
    main.add_command(orders)


_register_groups()
_omnichannel_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
