"""Errors of the ``sync`` package, and the one ``ConfigError``.

``sync`` must not import ``edge_agent`` or ``central`` (both build on it), so its tree has
its own root; each side catches these at its adapters and maps them with
``raise … from exc`` where it needs its own::

    SyncError
    ├── WireFormatError      a value or payload breaks PROTOCOL §2 (floats, limits, JSON)
    ├── LinkError            the MQTT connection failed or is not up     .operation
    │   └── AuthenticationFailed   the broker refused our credentials   .reason_code
    ├── SnapshotError        the snapshot fetch (§5.3) failed          .url .status_code
    ├── IdentifierError      a customer identifier cannot be normalised (sync.customer_ids)
    └── RecallInvalid        a recall command's data is malformed (sync.recalls)

    ConfigError              a configuration file is invalid             .problems
                             (defined once here; the agent's and the central's are
                             subclasses placed under their own roots)

``IdentifierError``, ``RecallInvalid`` and ``WireFormatError`` are also ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "LinkError",
    "SnapshotError",
    "SyncError",
    "WireFormatError",
]


class SyncError(Exception):
    """Root of every error raised by ``sync``."""


class WireFormatError(SyncError, ValueError):
    """A value or payload that PROTOCOL v1 §2 does not allow."""


class LinkError(SyncError):
    """The MQTT link is down or an operation on it failed.

    ``operation``: what was being done (``"connect to host:port"``, ``"publish to
    topic"``, ``"subscribe"``), empty when the link could not even be set up.
    ``unreachable``: the TCP connection to the broker could not be opened (refused, no
    route): the broker was away, not refusing us at the protocol level."""

    def __init__(self, message: str, *, operation: str = "", unreachable: bool = False
                 ) -> None:
        super().__init__(message)
        self.operation = operation
        self.unreachable = unreachable


class AuthenticationFailed(LinkError):
    """The broker refused the credentials; retrying hot will not help.
    ``reason_code``: the CONNACK reason code (MQTT 3.1.1 or 5), if known."""

    def __init__(self, message: str, *, operation: str = "",
                 reason_code: int | None = None) -> None:
        super().__init__(message, operation=operation)
        self.reason_code = reason_code


class SnapshotError(SyncError):
    """Fetching or applying a snapshot failed. ``url`` and ``status_code`` (the HTTP
    status, for a refused fetch) say where, when known."""

    def __init__(self, message: str, *, url: str | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. ``problems`` lists every
    problem found (all at once, so that one edit fixes them).

    The one definition: ``edge_agent.errors.ConfigError`` and ``central.errors.ConfigError``
    subclass it to sit under their own roots, so ``except sync.errors.ConfigError``
    catches either."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message if not self.problems else message + "\n" + "\n".join(
            f"  - {problem}" for problem in self.problems))
