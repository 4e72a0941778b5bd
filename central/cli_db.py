"""``edge-central db backup|restore|restore-done``: back up the central database while it
runs, restore it (central stopped) with the marker that makes the restored central
announce it is behind its stores (:mod:`central.backup`, :mod:`central.restore`)."""

from __future__ import annotations

from pathlib import Path

import click

from central.cli import _echo_json
from central.errors import CentralError

_config = click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                       default=None, help="TOML configuration file (its database_url).")
_database = click.option("--database-url", default=None, help="Override database_url.")


def _database_url(config_path: Path | None, database_url: str | None) -> str:
    from central.config import load_config  # noqa: PLC0415 - keep the client CLI light

    return load_config(config_path, {"database_url": database_url}).database_url


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

    try:
        taken = backup(_database_url(config_path, database_url), dest)
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_json({"backup": str(dest), "taken": taken})


@db.command("restore")
@_config
@_database
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
def db_restore(config_path: Path | None, database_url: str | None, source: Path) -> None:
    """Replace the (stopped) central's database with SOURCE and mark it restored."""
    from central.backup import restore  # noqa: PLC0415

    try:
        restored = restore(_database_url(config_path, database_url), source)
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_json({"restored_from": str(source), "restored_at": restored})


@db.command("restore-done")
@_config
@_database
def db_restore_done(config_path: Path | None, database_url: str | None) -> None:
    """Clear the restore marker once every store has caught up (restart central after)."""
    from central.backup import restore_done  # noqa: PLC0415

    try:
        marker = restore_done(_database_url(config_path, database_url))
    except CentralError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_json({"cleared": marker})
