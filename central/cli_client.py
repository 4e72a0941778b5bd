"""The operator CLI's plumbing: the options every command takes (before or after its
name), the small client of the central's operator API, and how answers are printed.

The commands themselves are in :mod:`central.cli` and its groups (``cli_db``,
``cli_recall``, ``customer_cli``, ``omni_cli``), which all import from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import orjson

from central.cli_output import Failure, Unreachable, UsageFailure, show

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "http://127.0.0.1:8480"
# where `edge-central serve` generates the operator token with the default database_url
DEFAULT_TOKEN_FILE = Path("/var/lib/edge-central/admin.token")
URL_ENV = "EDGE_CENTRAL_URL"
TOKEN_ENV = "EDGE_CENTRAL_ADMIN_TOKEN"  # noqa: S105 - the variable's name


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


def url_option(f: F) -> F:
    return click.option("--url", default=None, expose_value=False, is_eager=True,
                        callback=_set("url"),
                        help=f"Base URL of a running edge-central (default: ${URL_ENV}, "
                             f"else {DEFAULT_URL}).")(f)


def token_option(f: F) -> F:
    return click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
                        default=None, expose_value=False, is_eager=True,
                        callback=_set("token_file"),
                        help=f"File with the admin token (or set ${TOKEN_ENV}).")(f)


def json_option(f: F) -> F:
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
store_option = click.option("--store", required=True, help="Store id, e.g. S001.")


def api_options(f: F) -> F:
    """``--url`` and ``--token-file`` as the ``url`` and ``token_file`` parameters of a
    group's command (recall, omni, customers)."""
    return _url(_token(f))


def route_command(group: click.Group, name: str, method: str, path: str, summary: str, *,
                  argument: str | None = None) -> None:
    """Add to ``group`` a command that calls one route and prints its answer; ``path`` may
    name the command's one ``argument`` (``"/v1/orders/{order_id}"``)."""

    def call(url: str, token_file: Path | None, **arguments: str) -> None:
        echo_call(url, token_file, method, path.format(**arguments))

    command = api_options(call)
    if argument is not None:
        command = click.argument(argument)(command)
    group.command(name, help=summary)(command)


def echo_call(url: str, token_file: Path | None, method: str, path: str,
              **kwargs: Any) -> None:
    """Call the operator API and print its JSON answer."""
    echo_json(Api(url, token_file).call(method, path, **kwargs))


def echo_json(data: Any) -> None:
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
        url_option(cmd)
    if "--token-file" not in opts:
        token_option(cmd)
    if "--json" not in opts:
        json_option(cmd)
    if isinstance(cmd, click.Group) and not isinstance(cmd, CentralGroup):
        for sub in cmd.commands.values():
            _shared_options(sub)
