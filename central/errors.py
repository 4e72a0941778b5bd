"""Errors of the reference central (``central``), under :class:`sync.errors.SyncError`.

::

    SyncError
    └── CentralError
        ├── StorageError      the database failed (sqlite3 / psycopg errors mapped here)
        ├── ConfigError       the configuration file is invalid (all problems at once)
        ├── InvalidCommandError an operator command is invalid (unknown store, bad lines, …)
        └── OrderError        an order cannot be taken or changed (``code``, HTTP ``status``)
            ├── OrderConflict        the order id exists with another request
            ├── UnknownOrder
            └── OrderNotCancellable  already handed over
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


class OrderError(CentralError):
    """An order request or operation that cannot be carried out; ``code`` is stable."""

    status = 422
    code = "order_invalid"


class OrderConflict(OrderError):
    """The order id exists with a different request."""

    status = 409
    code = "order_conflict"


class UnknownOrder(OrderError):
    status = 404
    code = "unknown_order"


class OrderNotCancellable(OrderError):
    status = 409
    code = "order_not_cancellable"
