"""Errors of the reference central (``central``): its own root, apart from ``sync``'s.

::

    CentralError
    ├── StorageError          the database failed (sqlite3 / psycopg mapped here)  .backend
    │   └── Fenced            this worker lost the store's lease (central.fencing)
    ├── ConfigError           the configuration file is invalid (all problems)     .problems
    │                         (also a sync.errors.ConfigError, the one definition)
    ├── InvalidCommandError   an operator command is invalid (unknown store, bad lines, …)
    │   └── RegistryError     a customer registry request is invalid (central.customer_registry)
    └── OrderError            an order cannot be taken or changed (``code``, HTTP ``status``)
        ├── OrderConflict         the order id exists with another request
        ├── UnknownOrder
        ├── OrderNotCancellable   already handed over
        └── OrderFenced           a store's lease moved to another worker (central.fencing)

``InvalidCommandError`` is also a ``ValueError``. Errors of the shared ``sync`` package
(``sync.errors.SyncError``) that reach the central keep their own root.
"""

from __future__ import annotations

from typing import Literal

import sync.errors

__all__ = ["CentralError", "ConfigError", "InvalidCommandError", "StorageError"]


class CentralError(Exception):
    """Root of the central's own errors."""


class StorageError(CentralError):
    """A database operation failed. ``backend``: ``"sqlite"`` or ``"postgresql"`` when
    the failure came from one, else None (e.g. a bad database URL)."""

    def __init__(self, message: str, *,
                 backend: Literal["sqlite", "postgresql"] | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class ConfigError(CentralError, sync.errors.ConfigError):
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


class OrderFenced(OrderError):
    """An order write touched a store whose lease this worker no longer holds: rolled back."""

    status = 409
    code = "store_fenced"
