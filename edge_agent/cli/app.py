"""The ``edge-agent`` command group: global options, error handling, exit codes."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import click

from edge_agent import __version__
from edge_agent.cli._base import (
    EXIT_USAGE,
    CliError,
    State,
    config_option,
    env_config_help,
    error_for,
    json_option,
)
from edge_agent.config_load import CONFIG_ENV
from edge_agent.errors import EdgeAgentError
from sync.files import restrict_umask

EPILOG = ("Exit codes: 0 ok; 1 check failed or operation refused; 2 usage or configuration "
          "error; 3 daemon unreachable; 4 database problem.")


def _load_commands() -> None:
    """Each command module registers its commands on :data:`cli` when imported."""
    importlib.import_module("edge_agent.cli.commands")


def report_error(err: CliError) -> None:
    first, *rest = err.message.splitlines() or [""]
    click.echo(f"error: {first}", err=True)
    for line in rest:
        click.echo(line, err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


class AgentGroup(click.Group):
    """Maps every error to one clear line, a hint and a documented exit code.

    Every command and sub-group added to it also takes ``--config`` and ``--json`` after
    its name (``edge-agent config check --config bad.toml``), as git and docker accept
    their options in either place.

    Command modules are imported when first needed (click's lazy-group pattern): ``run``
    registers itself, so ``edge-agent run`` imports no other command's module; any other
    name, and the command list (``--help``), import them all (edge_agent.cli.commands).
    """

    group_class = type  # sub-groups are AgentGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        opts = {opt for param in cmd.params for opt in param.opts}
        if "--config" not in opts:
            config_option(cmd)
        if "--json" not in opts and not isinstance(cmd, click.Group):
            json_option(cmd)
        super().add_command(cmd, name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            _load_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (CliError, EdgeAgentError) as exc:
            err = error_for(exc)
            report_error(err)
            raise click.exceptions.Exit(err.code) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


@click.group(
    cls=AgentGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              envvar=CONFIG_ENV, help=env_config_help())
@click.option("--json", "json_", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(__version__, prog_name="edge-agent")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, json_: bool) -> None:
    """edge-agent: the store-side daemon and its technician's tools.

    Most commands talk to the running daemon over its Unix socket; read-only commands
    read the database directly when the daemon is not running.
    """
    obj = ctx.ensure_object(State)
    obj.config_path = config_path
    obj.json = obj.json or json_


def main() -> None:
    restrict_umask()  # files 0640, directories 0750 or stricter, whatever the caller's umask
    try:
        cli.main(prog_name="edge-agent", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # last resort: one line, not a traceback
        if os.environ.get("EDGE_AGENT_DEBUG"):
            raise
        err = error_for(exc)
        err.hint = err.hint or "set EDGE_AGENT_DEBUG=1 to see the traceback"
        report_error(err)
        raise SystemExit(err.code or EXIT_USAGE) from None
