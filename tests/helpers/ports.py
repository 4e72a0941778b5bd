"""Free loopback ports for test servers, never the same one twice on this machine at once.

``bind(0)`` hands out a port from the kernel's ephemeral range and forgets it once the
socket closes: before the server binds it, an outgoing connection of any program (or a
second test run's ``bind(0)``) may take it, and the server fails with "address already
in use". Two ``make test`` at once met that. So a port here comes from below the ephemeral
range (no outgoing connection and no ``bind(0)`` ever uses those), and is claimed with
an ``flock`` on a file named after it, held by this process until many newer claims have
replaced it: another test run on the machine skips a claimed port.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import random
import socket
import tempfile
import time
from pathlib import Path

_LOCKS = Path(tempfile.gettempdir()) / "edge-agent-test-ports"
_HELD: collections.OrderedDict[int, int] = collections.OrderedDict()  # port -> lock fd
_KEEP = 256  # claims held at once; the oldest is let go (its test ended long ago)


def _candidates() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (Linux default 32768-60999)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 10000, max(10000 + 1000, min(low, 65536)) - 1


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    _LOCKS.mkdir(mode=0o700, exist_ok=True)
    lo, hi = _candidates()
    for _ in range(10_000):
        port = random.randint(lo, hi)
        if port in _HELD:
            continue
        fd = os.open(_LOCKS / str(port), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if not _bindable(port):
            os.close(fd)
            continue
        _HELD[port] = fd
        while len(_HELD) > _KEEP:
            _, old = _HELD.popitem(last=False)
            with contextlib.suppress(OSError):
                os.close(old)
        return port
    raise RuntimeError(f"no free loopback port in {lo}-{hi}")


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
