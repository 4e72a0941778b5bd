"""Shared plumbing of the ``edge-agent`` commands: context, output, errors, exit codes.

Exit codes (documented in docs/cli.md):

====  =========================================================
0     ok
1     a check failed, or the operation was refused
2     usage or configuration error
3     the daemon is unreachable and the command needs it
4     database problem
====  =========================================================
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_agent.config import Config
from edge_agent.config_load import CONFIG_ENV, load_config, resolve_path
from edge_agent.errors import (
    ConfigError,
    DatabaseLocked,
    EdgeAgentError,
    LedgerError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DATABASE = 4

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """One clear line for the user, an optional hint, and the exit code."""

    def __init__(self, message: str, *, hint: str = "", code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class DaemonUnreachable(CliError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(
            message,
            hint=hint or "is the agent running? `systemctl status edge-agent`; "
                         "`edge-agent doctor` checks everything",
            code=EXIT_UNREACHABLE,
        )


def error_for(exc: BaseException) -> CliError:
    """Map the agent's own errors onto one line and an exit code."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ConfigError):
        first, *rest = str(exc).splitlines()
        hint = "" if "no such configuration file" in first else _config_hint()
        return CliError(first + ("".join(f"\n{line}" for line in rest)), code=EXIT_USAGE,
                        hint=hint)
    if isinstance(exc, DatabaseLocked):
        return CliError(str(exc), code=EXIT_FAILED)
    if isinstance(exc, LedgerError):
        return CliError(str(exc), code=EXIT_DATABASE,
                        hint="`edge-agent db check` for details")
    if isinstance(exc, EdgeAgentError):
        return CliError(str(exc), code=EXIT_FAILED)
    return CliError(f"{type(exc).__name__}: {exc}", code=EXIT_FAILED)


def _config_hint() -> str:
    """What to do about an invalid configuration (``config check`` has its own)."""
    return "fix the keys listed above; `edge-agent config check` validates the file alone"


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        obj = ctx.find_object(State) or ctx.ensure_object(State)
        obj.config_path = value
        obj._config = None
    return value


def config_option(f: F) -> F:
    """``--config PATH`` after the command too (same as the global option)."""
    return click.option("--config", "config_path_", type=click.Path(path_type=Path),
                        expose_value=False, is_eager=True, callback=_set_config,
                        help=env_config_help())(f)


@dataclass
class State:
    """``ctx.obj``: global options and lazily loaded configuration."""

    config_path: Path | None = None
    json: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def resolved_config_path(self) -> Path:
        return resolve_path(self.config_path)

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def state() -> State:
    ctx = click.get_current_context()
    obj = ctx.find_object(State)
    if obj is None:  # a sub-command invoked on its own (tests)
        obj = ctx.ensure_object(State)
    return obj


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        obj = ctx.find_object(State) or ctx.ensure_object(State)
        obj.json = True
    return value


def json_option(f: F) -> F:
    """``--json`` on every command (same as the global flag)."""
    return click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_json,
                        help="Print machine-readable JSON instead of tables.")(f)


def console(stderr: bool = False) -> Console:
    width = None if sys.stdout.isatty() else max(120, shutil.get_terminal_size((120, 24))[0])
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False))


def note(text: str) -> None:
    """A remark for humans (stderr, so ``--json`` output stays parseable)."""
    click.echo(text, err=True)


def _plain(text: str | None) -> Text | None:
    """Rich would read ``[store]`` as markup: titles and cells are plain text."""
    return None if text is None else Text(text)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=_plain(title), show_lines=False, title_justify="left")
    for col in columns:
        t.add_column(Text(col), overflow="fold")
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    console().print(t)


def kv_table(title: str | None, items: Iterable[tuple[str, Any]]) -> None:
    t = Table(title=_plain(title), show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in items:
        shown = "—" if value is None else ("yes" if value else "no") \
            if isinstance(value, bool) else str(value)
        t.add_row(Text(str(key).replace("_", " ")), Text(shown))
    console().print(t)


def env_config_help() -> str:
    return f"Configuration file (default: ${CONFIG_ENV}, else /etc/edge-agent/config.toml)."


def is_root() -> bool:
    return os.geteuid() == 0
