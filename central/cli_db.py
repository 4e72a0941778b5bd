"""``edge-central db backup|restore|restore-done``: back up the central database while it
runs, restore it (central stopped) with the marker that makes the restored central
announce it is behind its stores (:mod:`central.backup`, :mod:`central.restore`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from central.cli_client import echo_json
from central.errors import CentralError

T = TypeVar("T")

_config = click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                       default=None, help="TOML configuration file (its database_url).")
_database = click.option("--database-url", default=None, help="Override database_url.")


def _on_database(config_path: Path | None, database_url: str | None,
                 action: Callable[[str], T]) -> T:
    """``action`` on the configured database URL; a CentralError fails the command."""
    from central.config import load_config  # noqa: PLC0415 - keep the client CLI light

    try:
        return action(load_config(config_path, {"database_url": database_url}).database_url)
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def db() -> None:
    """Back up and restore the central database (SQLite backup API or pg_dump)."""


@db.command("backup")
@_config
@_database
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
def db_backup(config_path: Path | None, database_url: str | None, dest: Path) -> None:
    """Write a consistent backup of the running central to DEST (0640)."""
    from central.backup import backup  # noqa: PLC0415

    taken = _on_database(config_path, database_url, lambda url: backup(url, dest))
    echo_json({"backup": str(dest), "taken": taken})


@db.command("restore")
@_config
@_database
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
def db_restore(config_path: Path | None, database_url: str | None, source: Path) -> None:
    """Replace the (stopped) central's database with SOURCE and mark it restored."""
    from central.backup import restore  # noqa: PLC0415

    restored = _on_database(config_path, database_url, lambda url: restore(url, source))
    echo_json({"restored_from": str(source), "restored_at": restored})


@db.command("restore-done")
@_config
@_database
def db_restore_done(config_path: Path | None, database_url: str | None) -> None:
    """Clear the restore marker once every store has caught up (restart central after)."""
    from central.backup import restore_done  # noqa: PLC0415

    marker = _on_database(config_path, database_url, restore_done)
    echo_json({"cleared": marker})
