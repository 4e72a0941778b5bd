"""Slow-header ("slowloris") clients: connections that send a request head a byte at a
time and never finish it. The server under test must close them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def hold_slow_heads(host: str, port: int, *, count: int = 20, drip_s: float = 0.5,
                    give_up_s: float = 90.0,
                    meanwhile: Callable[[], None] | None = None) -> float:
    """Open ``count`` connections that drip header lines forever; return the seconds
    until the server had closed all of them. ``meanwhile`` runs once they are open (a
    normal request must still be served). Fails only after ``give_up_s`` with at least one
    still open, which is far beyond any sane head deadline."""
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        s.setblocking(False)
        socks.append(s)
    started = time.monotonic()
    if meanwhile is not None:
        meanwhile()
    open_socks = set(socks)
    try:
        while open_socks:
            assert time.monotonic() - started < give_up_s, (
                f"{len(open_socks)} of {count} slow-header connections still open after "
                f"{give_up_s:.0f} s")
            for s in list(open_socks):
                try:
                    if s.recv(4096) == b"":
                        open_socks.discard(s)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    open_socks.discard(s)
                    continue
                try:
                    s.send(b"X-Drip: 1\r\n")
                except OSError:
                    open_socks.discard(s)
            time.sleep(drip_s)
        return time.monotonic() - started
    finally:
        for s in socks:
            s.close()
