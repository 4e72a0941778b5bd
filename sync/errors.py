"""Errors of the ``sync`` package.

``sync`` must not import ``edge_agent`` (the reference central reuses it), so its tree
has its own root; the agent maps these at its adapter (``edge_agent/errors.py``)::

    SyncError
    ├── WireFormatError      a value or payload breaks PROTOCOL §2 (floats, limits, JSON)
    ├── ProtocolViolation    well-formed JSON that breaks a §4/§5 rule (wrong store, gap)
    ├── LinkError            the MQTT connection failed or is not up
    │   └── AuthenticationFailed   the broker refused our credentials
    └── SnapshotError        the snapshot fetch (§5.3) failed
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error raised by ``sync``."""


class WireFormatError(SyncError, ValueError):
    """A value or payload that PROTOCOL v1 §2 does not allow."""


class ProtocolViolation(SyncError):
    """A well-formed message that breaks a rule of §4 or §5."""


class LinkError(SyncError):
    """The MQTT link is down or an operation on it failed."""


class AuthenticationFailed(LinkError):
    """The broker refused the credentials; retrying hot will not help."""


class SnapshotError(SyncError):
    """Fetching or applying a snapshot failed."""
