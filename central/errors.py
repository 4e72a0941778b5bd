"""Errors of the reference central (``central``), under :class:`sync.errors.SyncError`.

::

    SyncError
    └── CentralError
        ├── StorageError      the database failed (sqlite3 / psycopg errors mapped here)
        ├── ConfigError       the configuration file is invalid (all problems at once)
        └── InvalidCommandError an operator command is invalid (unknown store, bad lines, …)
"""

from __future__ import annotations

from sync.errors import SyncError


class CentralError(SyncError):
    """Root of the central's own errors."""


class StorageError(CentralError):
    """A database operation failed."""


class ConfigError(CentralError):
    """The configuration is invalid; the message lists every problem."""


class InvalidCommandError(CentralError, ValueError):
    """An operator command cannot be issued as given."""
