"""The lock file beside the database: one agent per ledger, and its clean-stop mark.

An exclusive ``flock`` keeps a second agent off the file; the lock file's text is the
holder's pid while it runs and, after a clean stop, the database file's identity so the
next open may skip the full integrity check.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from edge_agent.errors import DatabaseLocked, LedgerError
from sync.files import FILE_MODE, tighten


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def acquire_lock(path: Path) -> int:
    """Hold an exclusive flock beside the database for the life of the process.

    A second agent on the same file would fight the first for the store's MQTT client id
    and interleave seqs; refuse it with the holder's pid.
    """
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    tighten(lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DatabaseLocked(
                f"{path} is in use by another edge-agent (pid {holder}); stop it first "
                "(systemctl stop edge-agent)"
            ) from exc
        raise LedgerError(f"cannot lock {lock}: {exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _file_mark(path: Path) -> str | None:
    """The database file's identity as a clean stop leaves it, or None if a WAL remains."""
    try:
        st = path.stat()
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return None
    except OSError:
        return None
    return f"clean size={st.st_size} mtime_ns={st.st_mtime_ns} ino={st.st_ino}"


def write_clean_stop(path: Path, lock_fd: int) -> None:
    """Leave a clean-stop mark in the lock file: the file's size, mtime and inode.

    Written after the last connection closed (SQLite has then checkpointed and removed the
    WAL). The next open skips the full ``quick_check`` only if the file still matches.
    """
    mark = _file_mark(path)
    if mark is None:
        return
    try:
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{mark}\n".encode(), 0)
        os.fsync(lock_fd)
    except OSError:
        return  # no mark: the next start runs the full check, which is only slower


def clean_stop_matches(path: Path) -> bool:
    """True when the last holder stopped cleanly and the file is as it left it."""
    try:
        text = lock_path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return False
    current = _file_mark(path)
    return current is not None and text == current


def is_locked(path: Path) -> bool:
    """True when a live process holds the database (the daemon is running)."""
    lock = lock_path(path)
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
