"""Private files and directories: what the agent and central create is 0640 / 0750 or
stricter, whatever the umask they were started with.

Used by both sides (``edge_agent`` and ``central`` may import ``sync``): the ledger and
central's SQLite database (SQLite gives its ``-wal`` and ``-shm`` the database file's
mode), backups, lock files, token files. Nothing here reads or writes content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
SECRET_MODE: Final = 0o600
UMASK: Final = 0o027


def restrict_umask() -> int:
    """Make the process umask at least 027 (keeping any stricter bits); returns the old
    one. Called first thing by the command-line entry points."""
    old = os.umask(UMASK)
    os.umask(old | UMASK)
    return old


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0750 (existing ones are left alone)."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def tighten(path: Path, limit: int = FILE_MODE) -> None:
    """Drop any permission bit of an existing file beyond ``limit`` (no-op if missing)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & ~limit:
        os.chmod(path, mode & limit)


def private_file(path: Path, mode: int = FILE_MODE) -> Path:
    """Create ``path`` empty with ``mode`` if it does not exist, else tighten it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        tighten(path, mode)
        return path
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def sqlite_files(path: Path) -> list[Path]:
    """The database file and the companions SQLite creates beside it."""
    return [Path(path), Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]


def private_database(path: Path) -> None:
    """Before SQLite opens ``path``: parents 0750, the file 0640 (new) or tightened, and
    any existing companions tightened. SQLite creates new ``-wal``/``-shm`` files with
    the database file's mode."""
    private_dir(Path(path).parent)
    private_file(path)
    for companion in sqlite_files(path)[1:]:
        tighten(companion)


def write_secret(path: Path, data: str) -> None:
    """Write a secret to a new 0600 file (atomic replace; the parent must exist)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    try:
        os.fchmod(fd, SECRET_MODE)
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
