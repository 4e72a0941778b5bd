"""Exception tree of the ``drivers`` package.

::

    DriverError                 root; everything this package raises on purpose
    ├── PortError               a port could not be opened/read/written (pyserial, OS)  .port
    └── DriverUnavailable       an optional extra (evdev, bleak) is missing, or wrong OS

Lower-layer errors (``serial.SerialException``, ``OSError``) are mapped at the
reader (:mod:`drivers.readers`, :mod:`drivers.hid`) with ``raise PortError(...) from exc``.
Parsers never raise: their ``feed`` returns :class:`drivers.framing.Rejected` items
instead (see :mod:`drivers.framing`).
"""

from __future__ import annotations

__all__ = ["DriverError", "DriverUnavailable", "PortError"]


class DriverError(Exception):
    """Root of every error raised by :mod:`drivers`."""


class PortError(DriverError):
    """The device port could not be opened, read or written. ``port``: which one."""

    def __init__(self, message: str, *, port: str) -> None:
        super().__init__(message)
        self.port = port


class DriverUnavailable(DriverError):
    """The driver cannot run here (optional extra not installed, or not Linux)."""
