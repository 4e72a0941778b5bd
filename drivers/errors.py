"""Exception tree of the ``drivers`` package.

::

    DriverError                 root; everything this package raises on purpose
    ├── FrameError              a malformed frame; carries the offending bytes as hex
    ├── PortError               a port could not be opened/read/written (pyserial, OS)
    └── DriverUnavailable       an optional extra (evdev, bleak) is missing, or wrong OS

Lower-layer errors (``serial.SerialException``, ``OSError``) are mapped at the
reader with ``raise PortError(...) from exc``.  Parsers never raise: their ``feed``
returns :class:`drivers.parsers.Rejected` items instead (see ``drivers.parsers``).
"""

from __future__ import annotations

__all__ = ["DriverError", "DriverUnavailable", "FrameError", "PortError"]


class DriverError(Exception):
    """Root of every error raised by :mod:`drivers`."""


class FrameError(DriverError):
    """A frame failed validation.

    ``hex`` holds the offending bytes (hex-encoded, possibly truncated to
    :data:`MAX_HEX_BYTES` bytes); ``reason`` is a short machine-readable reason.
    """

    MAX_HEX_BYTES = 64

    def __init__(self, reason: str, data: bytes = b"") -> None:
        self.reason = reason
        self.hex = data[: self.MAX_HEX_BYTES].hex()
        super().__init__(f"{reason}: {self.hex}" if self.hex else reason)


class PortError(DriverError):
    """The device port could not be opened, read or written."""


class DriverUnavailable(DriverError):
    """The driver cannot run here (optional extra not installed, or not Linux)."""
