"""``edge-central``: run the reference central, and operate it over its HTTP API."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import orjson

from central.cli_output import Failure, Unreachable, UsageFailure, show
from central.customer_cli import customers
from central.errors import CentralError
from sync.files import restrict_umask

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "http://127.0.0.1:8480"
# where `edge-central serve` generates the operator token with the default database_url
DEFAULT_TOKEN_FILE = Path("/var/lib/edge-central/admin.token")
URL_ENV = "EDGE_CENTRAL_URL"
TOKEN_ENV = "EDGE_CENTRAL_ADMIN_TOKEN"  # noqa: S105 - the variable's name


def _version() -> str:
    try:
        return metadata.version("edge-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Options:
    """Options given before or after the command (``ctx.obj``), as edge-agent takes them."""

    url: str | None = None
    token_file: Path | None = None
    json: bool = False


def _options() -> Options:
    ctx = click.get_current_context()
    return ctx.find_object(Options) or ctx.ensure_object(Options)


def _set(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            setattr(ctx.find_object(Options) or ctx.ensure_object(Options), name, value)
        return value
    return callback


def _url_option(f: F) -> F:
    return click.option("--url", default=None, expose_value=False, is_eager=True,
                        callback=_set("url"),
                        help=f"Base URL of a running edge-central (default: ${URL_ENV}, "
                             f"else {DEFAULT_URL}).")(f)


def _token_option(f: F) -> F:
    return click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
                        default=None, expose_value=False, is_eager=True,
                        callback=_set("token_file"),
                        help=f"File with the admin token (or set ${TOKEN_ENV}).")(f)


def _json_option(f: F) -> F:
    return click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set("json"),
                        help="Print machine-readable JSON instead of tables.")(f)


def out(data: Any, title: str | None = None) -> None:
    show(data, as_json=_options().json, title=title)


class Api:
    """Tiny client of the central's operator API."""

    def __init__(self, url: str, token_file: Path | None) -> None:
        token = os.environ.get(TOKEN_ENV)
        if token_file is None and not token and DEFAULT_TOKEN_FILE.exists():
            token_file = DEFAULT_TOKEN_FILE
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise UsageFailure(f"cannot read the token file {token_file}: "
                                   f"{exc.strerror}") from exc
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach central at {self.url}: {exc}",
                          hint=f"is edge-central serve running there? --url or ${URL_ENV} "
                               "names another") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = (f"{body['code']}: {body.get('message')}" if "code" in body
                          else body.get("detail"))
            except (ValueError, AttributeError):
                detail = response.text
            hint = (f"give the admin token with --token-file or ${TOKEN_ENV} (edge-central "
                    f"writes it beside its SQLite database, e.g. {DEFAULT_TOKEN_FILE})"
                    if response.status_code in (401, 403) else "")
            raise Failure(f"central refused (HTTP {response.status_code}): {detail}", hint=hint)
        return response.json()


def api() -> Api:
    options = _options()
    url = options.url or os.environ.get(URL_ENV) or DEFAULT_URL
    token_file = options.token_file
    if token_file is None and os.environ.get("EDGE_CENTRAL_ADMIN_TOKEN_FILE"):
        token_file = Path(os.environ["EDGE_CENTRAL_ADMIN_TOKEN_FILE"])
    return Api(url, token_file)


# the options of the commands that take them as parameters (recall, omni, customers)
_url = click.option("--url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
                    help="Base URL of a running edge-central.")
_token = click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
                      default=None, envvar="EDGE_CENTRAL_ADMIN_TOKEN_FILE",
                      help="File with the admin token (or EDGE_CENTRAL_ADMIN_TOKEN_FILE, or "
                      "the token in EDGE_CENTRAL_ADMIN_TOKEN); default "
                      f"{DEFAULT_TOKEN_FILE} when readable.")
_store = click.option("--store", required=True, help="Store id, e.g. S001.")


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


class CentralGroup(click.Group):
    """Every command and sub-group also takes --url, --token-file and --json after its
    name; sub-groups are CentralGroups too."""

    group_class = type

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _shared_options(cmd)
        super().add_command(cmd, name)


def _shared_options(cmd: click.Command) -> None:
    """--url, --token-file and --json on a command and, for a plain click group added
    whole (recall, atp, orders, customers), on each of its commands."""
    opts = {opt for param in cmd.params for opt in param.opts}
    if "--url" not in opts:
        _url_option(cmd)
    if "--token-file" not in opts:
        _token_option(cmd)
    if "--json" not in opts:
        _json_option(cmd)
    if isinstance(cmd, click.Group) and not isinstance(cmd, CentralGroup):
        for sub in cmd.commands.values():
            _shared_options(sub)


@click.group(cls=CentralGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Exit codes: 0 ok; 1 refused or failed; 2 usage or configuration error; "
                    "3 central unreachable.")
@_url_option
@_token_option
@_json_option
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
@_store
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
@_store
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
@_store
@click.option("--sku", "skus", multiple=True, required=True)
@click.option("--count-id", default=None)
def count(store: str, skus: tuple[str, ...],
          count_id: str | None) -> None:
    """Ask the store to count SKUs."""
    body = {"skus": list(skus), "count_id": count_id}
    out(api().call("POST", f"/v1/stores/{store}/counts", json=body))


@command.command("resync")
@_store
def resync(store: str) -> None:
    """Tell the store to replace its state with central's snapshot."""
    out(api().call("POST", f"/v1/stores/{store}/resync"))


@main.group()
def reserve() -> None:
    """Click-and-collect reservations."""


@reserve.command("create")
@_store
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
@_store
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
@_store
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
@_store
def quarantine_list(store: str) -> None:
    """Quarantined events of a store (malformed stock lists), unresolved first."""
    out(api().call("GET", f"/v1/stores/{store}/quarantine"))


@quarantine.command("resolve")
@_store
@click.option("--epoch", required=True)
@click.option("--seq", type=int, required=True)
def quarantine_resolve(store: str, epoch: str,
                       seq: int) -> None:
    """Mark a quarantined event as dealt with (re-enables automatic resync)."""
    out(api().call("POST", f"/v1/stores/{store}/quarantine/resolve",
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
