"""The fault proxy does what the chaos runs rely on, against a loopback echo server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.faultproxy import FaultProxy


@pytest.fixture
def echo() -> Iterator[tuple[int, list[bytes]]]:
    """An echo server; the list collects what it received."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                received.append(data)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], received
    stop.set()
    server.close()


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(3)
    return sock


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def is_dead(sock: socket.socket) -> bool:
    """True once the connection fails (RST, EOF) within a few attempts."""
    for _ in range(20):
        try:
            sock.sendall(b"?")
            if not sock.recv(4096):
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_forwards_both_ways(echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy:
        with connect(proxy) as sock:
            assert roundtrip(sock, b"hello") == b"hello"
        assert proxy.counters.bytes_up == proxy.counters.bytes_down == 5


def test_reset_kills_open_connections_and_new_ones_work(echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy:
        sock = connect(proxy)
        assert roundtrip(sock, b"a") == b"a"
        assert proxy.reset() == 1
        assert is_dead(sock)  # the RST surfaces on the next receive or send
        sock.close()
        with connect(proxy) as again:
            assert roundtrip(again, b"c") == b"c"


def test_stall_holds_bytes_then_delivers_them(echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy, connect(proxy) as sock:
        proxy.stall(0.8)
        started = time.monotonic()
        assert roundtrip(sock, b"late") == b"late"
        assert time.monotonic() - started >= 0.7


def test_blackhole_swallows_then_resets(echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy, connect(proxy) as sock:
        proxy.blackhole(0.6)
        sock.sendall(b"lost")
        sock.settimeout(0.4)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert b"lost" not in b"".join(echo[1])
        sock.settimeout(3)
        time.sleep(0.8)
        assert is_dead(sock)


def test_refuse_drops_new_connections_for_a_while(echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy:
        proxy.refuse(0.5)
        try:
            with connect(proxy) as sock:
                refused = is_dead(sock)
        except OSError:
            refused = True  # the reset came during the handshake
        assert refused
        time.sleep(0.6)
        with connect(proxy) as sock:
            assert roundtrip(sock, b"ok") == b"ok"


def test_half_open_keeps_the_client_side_open_and_silent(
        echo: tuple[int, list[bytes]]) -> None:
    with FaultProxy(echo[0]) as proxy, connect(proxy) as sock:
        assert roundtrip(sock, b"1") == b"1"
        proxy.half_open(0.8)
        sock.sendall(b"2")  # accepted by the proxy's side: the client sees no error
        sock.settimeout(0.4)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert b"2" not in b"".join(echo[1])
        time.sleep(0.6)
        sock.settimeout(3)
        assert is_dead(sock)


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(1883, target_host="10.0.0.1")
