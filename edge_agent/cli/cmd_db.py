"""``db check|backup|restore|vacuum``."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from edge_agent.cli._base import (
    EXIT_DATABASE,
    CliError,
    emit_json,
    json_option,
    kv_table,
    state,
    table,
)
from edge_agent.cli.app import cli
from edge_agent.maintenance import (
    backup_database,
    check_database,
    restore_database,
    vacuum_database,
)


@cli.group(name="db")
def db_group() -> None:
    """Check, back up, restore or compact the store's SQLite database."""


@db_group.command(name="check")
@click.option("--full", is_flag=True, help="PRAGMA integrity_check (slower) instead of "
                                          "quick_check.")
@json_option
def db_check(full: bool) -> None:
    """Integrity check, schema version, store id and epochs (exit 4 on a problem)."""
    st = state()
    result = check_database(st.config().database.path, full=full)
    if st.json:
        emit_json(asdict(result))
    else:
        kv_table(f"database {result.path}", [
            ("check", f"{result.mode}: {'ok' if result.ok else 'FAILED'}"),
            ("schema version", f"{result.schema_version} (this agent: "
                               f"{result.supported_version})"),
            ("store", result.store_id),
            ("size", f"{result.db_bytes} B, WAL {result.wal_bytes} B"),
            ("resync needed", "yes" if result.resync_needed else "no"),
        ])
        if result.epochs:
            table("epochs", ["#", "epoch", "last seq", "acked seq"],
                  [(e.ordinal, e.epoch, e.last_seq, e.acked_seq) for e in result.epochs])
        for problem in result.problems:
            click.echo(f"problem: {problem}", err=True)
    if not result.ok:
        sys.exit(EXIT_DATABASE)


@db_group.command(name="backup")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH when it is an existing file.")
@json_option
def db_backup(path: Path, force: bool) -> None:
    """Consistent online copy to PATH (file or directory), safe while the agent runs.
    An existing file is kept unless --force (a directory gets a new timestamped file)."""
    st = state()
    if path.exists() and not path.is_dir() and not force:
        raise CliError(f"{path} already exists; nothing written",
                       hint="use --force to overwrite it, or give a directory for a new "
                            "timestamped file")
    result = backup_database(st.config().database.path, path)
    if st.json:
        emit_json(asdict(result))
    else:
        click.echo(f"backup written to {result.path} ({result.bytes} B, store "
                   f"{result.store_id}, epoch {result.epoch} through seq {result.last_seq}, "
                   f"{result.seconds} s)")


@db_group.command(name="restore")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def db_restore(path: Path, yes: bool) -> None:
    """Replace the database by the backup at PATH (agent stopped); starts a new epoch
    and a resync. The current file is kept as *.pre-restore."""
    st = state()
    config = st.config()
    if not yes and not st.json:
        click.confirm(f"replace {config.database.path} with {path}?", abort=True)
    result = restore_database(path, config.database.path, config.store.id)
    if st.json:
        emit_json(asdict(result))
    else:
        click.echo(f"restored {result.backup} into {result.path}")
        if result.previous:
            click.echo(f"previous database kept as {result.previous}")
        for e in result.restored_epochs:
            click.echo(f"  epoch {e.epoch}: events through seq {e.last_seq} kept "
                       f"(acknowledged through {e.acked_seq}); unsent ones are still delivered")
        click.echo(f"new epoch {result.new_epoch} for every new fact; the agent resyncs from "
                   "central at its next start")


@db_group.command(name="vacuum")
@json_option
def db_vacuum() -> None:
    """Rebuild the file to return free space to the disk (agent stopped)."""
    st = state()
    result = vacuum_database(st.config().database.path)
    if st.json:
        emit_json(asdict(result))
    else:
        click.echo(f"vacuumed {result.path}: {result.bytes_before} B → {result.bytes_after} B")
