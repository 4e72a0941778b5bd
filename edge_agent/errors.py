"""The agent's exception tree. Every error the agent raises on purpose is one of these::

    EdgeAgentError
    ├── ConfigError               the TOML file is missing, unreadable or invalid  .problems
    │                             (also a sync.errors.ConfigError, the one definition)
    ├── LedgerError               the SQLite ledger
    │   ├── DatabaseLocked        another agent process holds the database
    │   ├── DatabaseCorrupt       PRAGMA quick_check failed or the file is not a database
    │   ├── SchemaTooNew          the file was written by a newer agent
    │   ├── FactRejected          a fact breaks PROTOCOL §2 (floats, limits, SKU form, size)
    │   ├── DiskFull              SQLite could not write for lack of space; nothing was recorded
    │   └── LedgerClosed          the ledger was closed while a write waited
    ├── OperationError            a retail operation refused by business rules   .code .status
    │   └── TillRefused           a till request refused (edge_agent.retail.till)
    ├── ApiServerError            the API could not listen (edge_agent.api.server)
    ├── CustomerCommandInvalid    a customer command's data is malformed (edge_agent.customers)
    └── VisitorsError             (edge_agent.visitors.errors)
        └── LoyaltyCommandInvalid a loyalty command's data is malformed

``CustomerCommandInvalid`` and ``LoyaltyCommandInvalid`` are also ``ValueError``. The CLI
reports its own failures with ``edge_agent.cli._base.CliError`` (not an agent error: the
daemon never raises it).

``drivers`` and ``sync`` cannot import this module (imports point one way), so they have
roots of their own (``drivers.errors.DriverError``, ``sync.errors.SyncError``). The agent
handles those where they arise (the device readers report and retry; the sync task
reconnects) rather than wrapping them.
"""

from __future__ import annotations

import sync.errors


class EdgeAgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(EdgeAgentError, sync.errors.ConfigError):
    """Configuration is missing or invalid. ``problems`` lists every error found."""


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
