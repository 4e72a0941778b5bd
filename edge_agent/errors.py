"""The agent's exception tree. Every error the agent raises on purpose is one of these::

    EdgeAgentError
    ├── ConfigError               the TOML file is missing, unreadable or invalid
    ├── LedgerError               the SQLite ledger
    │   ├── DatabaseLocked        another agent process holds the database
    │   ├── DatabaseCorrupt       PRAGMA quick_check failed or the file is not a database
    │   ├── SchemaTooNew          the file was written by a newer agent
    │   ├── FactRejected          a fact breaks PROTOCOL §2 (floats, limits, SKU form, size)
    │   ├── DiskFull              SQLite could not write for lack of space; nothing was recorded
    │   └── LedgerClosed          the ledger was closed while a write waited
    ├── OperationError            a retail operation refused by business rules (API maps to 4xx)
    ├── DeviceError               a device could not be opened or used (wraps drivers.DriverError)
    └── SyncFailure               the MQTT link or snapshot failed (wraps sync.SyncError)

``drivers`` and ``sync`` cannot import this module (imports point one way), so they have
roots of their own (``drivers.errors.DriverError``, ``sync.errors.SyncError``); the agent
maps them at its adapters with ``raise … from exc``.
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """Configuration is missing or invalid. ``problems`` lists every error found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message if not self.problems else message + "\n" + "\n".join(
            f"  - {problem}" for problem in self.problems))


class LedgerError(EdgeAgentError):
    """The ledger could not do what was asked."""


class DatabaseLocked(LedgerError):
    """Another process has the database open for writing."""


class DatabaseCorrupt(LedgerError):
    """The database file failed its integrity check."""


class SchemaTooNew(LedgerError):
    """The database schema is newer than this agent understands."""


class FactRejected(LedgerError, ValueError):
    """A fact that the protocol could not carry; nothing was recorded."""


class DiskFull(LedgerError):
    """SQLite ran out of space; the transaction was rolled back, nothing was recorded."""


class LedgerClosed(LedgerError):
    """The ledger is closed."""


class OperationError(EdgeAgentError):
    """A retail operation refused by its rules. ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str, *, status: int = 409) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class DeviceError(EdgeAgentError):
    """A device could not be opened or used."""


class SyncFailure(EdgeAgentError):
    """The link to central failed."""
