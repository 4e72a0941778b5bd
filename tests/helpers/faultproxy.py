"""A fault-injecting TCP proxy for tests (loopback only, threads, every fault bounded).

``FaultProxy(target_port)`` listens on a free 127.0.0.1 port and forwards each accepted
connection to ``127.0.0.1:target_port``. Faults, each bounded in time:

- ``reset()``: every open connection is closed with an RST (``SO_LINGER`` 0) both ways;
- ``refuse(seconds)``: new connections are accepted and dropped at once (a flapping link);
- ``stall(seconds)``: bytes stop flowing both ways (they are held, not lost), then resume;
- ``blackhole(seconds)``: bytes are silently discarded both ways; afterwards the affected
  connections are reset (a dead route: only keepalives can notice);
- ``half_open(seconds)``: the upstream side (towards the broker) is closed, the client's
  side stays open and swallows what the client sends, as after a NAT or router reboot;
  after ``seconds`` the client side is reset if the client has not noticed by itself.

Every fault ends by itself; ``heal()`` ends them all at once. ``stop()`` closes the
listener and every connection.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 65536


def _rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    blackholed_until: float = 0.0
    half_open: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self, *, reset: bool = True) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _rst(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()


@dataclass
class FaultCounters:
    connections: int = 0
    resets: int = 0
    refused: int = 0
    stalls: int = 0
    blackholes: int = 0
    half_opens: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        if target_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the fault proxy forwards to loopback only")
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refuse_until = 0.0
        self._stall_until = 0.0
        self._blackhole_until = 0.0
        self._threads: list[threading.Thread] = []
        self.counters = FaultCounters()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FaultProxy:
        thread = threading.Thread(target=self._accept_loop, name="faultproxy.accept",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._snapshot():
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _snapshot(self) -> list[_Conn]:
        with self._lock:
            self._conns = [c for c in self._conns if not c.closed]
            return list(self._conns)

    @property
    def open_connections(self) -> int:
        return len(self._snapshot())

    # -- faults --------------------------------------------------------------------------
    def reset(self) -> int:
        conns = self._snapshot()
        for conn in conns:
            conn.close(reset=True)
        self.counters.resets += 1
        return len(conns)

    def refuse(self, seconds: float) -> None:
        self._refuse_until = time.monotonic() + seconds
        self.counters.refused += 1

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds
        self.counters.stalls += 1

    def blackhole(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._blackhole_until = until
        for conn in self._snapshot():
            conn.blackholed_until = until
        self.counters.blackholes += 1
        self._later(seconds, self._reset_blackholed)

    def half_open(self, seconds: float) -> None:
        for conn in self._snapshot():
            conn.half_open = True
            with contextlib.suppress(OSError):
                conn.upstream.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.upstream.close()
        self.counters.half_opens += 1
        self._later(seconds, self._reset_half_open)

    def heal(self) -> None:
        self._refuse_until = self._stall_until = self._blackhole_until = 0.0
        self._reset_blackholed(force=True)
        self._reset_half_open()

    def _later(self, seconds: float, fn: object) -> None:
        def run() -> None:
            if not self._stop.wait(seconds):
                fn()  # type: ignore[operator]

        thread = threading.Thread(target=run, name="faultproxy.timer", daemon=True)
        thread.start()

    def _reset_blackholed(self, force: bool = False) -> None:
        now = time.monotonic()
        for conn in self._snapshot():
            if conn.blackholed_until and (force or conn.blackholed_until <= now + 0.01):
                conn.close(reset=True)

    def _reset_half_open(self) -> None:
        for conn in self._snapshot():
            if conn.half_open:
                conn.close(reset=True)

    # -- forwarding ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.2)
                if not readable:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            now = time.monotonic()
            if now < self._refuse_until:
                _rst(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            conn = _Conn(client, upstream)
            if now < self._blackhole_until:
                conn.blackholed_until = self._blackhole_until
            with self._lock:
                self._conns.append(conn)
            self.counters.connections += 1
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(conn, src, dst, up),
                                          name="faultproxy.pump", daemon=True)
                thread.start()

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not conn.closed and not self._stop.is_set():
                if conn.half_open and not up:
                    return  # the upstream is gone; nothing comes back to the client
                try:
                    readable, _, _ = select.select([src], [], [], 0.2)
                except (OSError, ValueError):
                    break
                if not readable:
                    continue
                try:
                    data = src.recv(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                while time.monotonic() < self._stall_until and not conn.closed:
                    time.sleep(0.02)
                if conn.half_open or time.monotonic() < conn.blackholed_until:
                    continue  # swallowed
                if up:
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
                try:
                    dst.sendall(data)
                except OSError:
                    break
        finally:
            if not conn.half_open:
                conn.close(reset=False)
