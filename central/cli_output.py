"""How ``edge-central`` prints: tables for people (docker and systemctl style), JSON with
``--json``, and one ``error: …`` line with a ``hint: …`` and a documented exit code.

Exit codes, as ``edge-agent``'s: 0 ok; 1 refused or failed; 2 usage or configuration
error; 3 central unreachable.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class Failure(click.ClickException):
    """One line for the operator, a hint; refused or failed (exit 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


class UsageFailure(Failure):
    """A usage or configuration error (exit 2)."""

    exit_code = EXIT_USAGE


class Unreachable(Failure):
    """Central cannot be reached (exit 3)."""

    exit_code = EXIT_UNREACHABLE


def _console() -> Console:
    width = None if sys.stdout.isatty() else max(120, shutil.get_terminal_size((120, 24))[0])
    return Console(width=width, highlight=False, soft_wrap=False)


def _cell(value: Any) -> Text:
    if value is None:
        return Text("—")
    if isinstance(value, dict | list):
        return Text(orjson.dumps(value).decode())
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(str(value))


def _table(title: str | None, rows: Sequence[dict[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = Table(title=None if title is None else Text(title), title_justify="left")
    for column in columns:
        table.add_column(Text(column.upper().replace("_", " ")), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def show(data: Any, *, as_json: bool, title: str | None = None) -> None:
    """``--json``: the API's answer as is. Else: its scalars as a two-column table and
    each list of records as a table of its own (empty lists say so)."""
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    out = _console()
    if isinstance(data, list):
        out.print(_table(title, data) if data else Text(f"{title or 'nothing'}: none"))
        return
    if not isinstance(data, dict):
        click.echo(str(data))
        return
    scalars = {k: v for k, v in data.items()
               if not (isinstance(v, list) and all(isinstance(i, dict) for i in v))}
    if scalars:
        table = Table(title=None if title is None else Text(title), show_header=False,
                      title_justify="left")
        table.add_column("key", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in scalars.items():
            if isinstance(value, dict) and value and not any(
                    isinstance(v, dict | list) for v in value.values()):
                for sub, item in value.items():  # one level of figures, one row each
                    table.add_row(Text(f"{key} {sub}".replace("_", " ")), _cell(item))
                continue
            table.add_row(Text(key.replace("_", " ")), _cell(value))
        out.print(table)
    for key, value in data.items():
        if key in scalars:
            continue
        if value:
            out.print(_table(key.replace("_", " "), value))
        else:
            out.print(Text(f"{key.replace('_', ' ')}: none"))
