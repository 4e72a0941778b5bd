"""Fixtures for the CLI tests: a configuration, a seeded ledger, a stand-in daemon API.

The stand-in daemon is a real HTTP/1.1 server on a real Unix socket (the API helper's
FastAPI app is tested on its own); it answers the routes a test gives it.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result

from edge_agent.cli import cli
from edge_agent.ledger import Ledger, Tx

STORE = "S001"
MQTT_SECRET = "mqtt-SECRET-pw-4711"  # noqa: S105 -- test secret, must never be printed
CENTRAL_SECRET = "central-SECRET-token-0815"  # noqa: S105 -- test secret


def write_config(tmp_path: Path, *, mqtt_url: str = "mqtt://127.0.0.1:1",
                 central_url: str | None = "http://127.0.0.1:9", extra: str = "",
                 devices: str = "") -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "mqtt-password").write_text(MQTT_SECRET + "\n")
    (secrets / "central-token").write_text(CENTRAL_SECRET + "\n")
    central = f'url = "{central_url}"\n' if central_url else ""
    text = f"""
[store]
id = "{STORE}"
timezone = "UTC"
low_stock_threshold = 3

[database]
path = "{tmp_path / 'state' / 'ledger.db'}"
min_free_bytes = 0

[mqtt]
url = "{mqtt_url}"
password_file = "{secrets / 'mqtt-password'}"

[central]
{central}token_file = "{secrets / 'central-token'}"
timeout_s = 3

[api]
socket = "{tmp_path / 'api.sock'}"
{extra}
{devices}
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o640)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.db"


def sale(sku: str, qty: int, price: str, terminal: str = "T1") -> Callable[[Tx], int]:
    def op(tx: Tx) -> int:
        total = f"{int(price.replace('.', '')) * qty / 100:.2f}"
        return tx.append("sale", {
            "sale_id": f"s-{sku}-{qty}-{terminal}", "terminal": terminal,
            "lines": [{"sku": sku, "qty": qty, "unit_price": price, "line_total": total}],
            "total": total, "currency": "EUR", "payments": [{"method": "cash", "amount": total}],
        }, stock=[(sku, -qty)]).seq
    return op


def receive(sku: str, qty: int) -> Callable[[Tx], int]:
    def op(tx: Tx) -> int:
        return tx.append("receipt", {"lines": [{"sku": sku, "qty": qty}]},
                         stock=[(sku, qty)]).seq
    return op


def seed(path: Path) -> str:
    """Catalog A-1 and B-2; receipts; two sales today; central acked the first event."""
    with Ledger.open(path, STORE) as ledger:
        def catalog(tx: Tx) -> None:
            tx.executemany(
                "INSERT INTO catalog (sku, name, price, currency) VALUES (?, ?, ?, ?)",
                [("A-1", "Blue mug", "12.90", "EUR"), ("B-2", "Red cup", "4.50", "EUR")],
            )
        ledger.write_blocking(catalog)
        ledger.write_blocking(receive("A-1", 10))
        ledger.write_blocking(receive("B-2", 3))
        ledger.write_blocking(sale("A-1", 2, "12.90"))
        ledger.write_blocking(sale("B-2", 1, "4.50", terminal="T2"))
        epoch = ledger.current_epoch
        ledger.write_blocking(lambda tx: tx.set_acked(epoch, 1))
    return epoch


@pytest.fixture
def seeded(config_path: Path, tmp_path: Path) -> str:
    return seed(db_path(tmp_path))


def invoke(config: Path, *args: str, input_text: str | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(cli, ["--config", str(config), *args], input=input_text,
                         catch_exceptions=False)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


# -- stand-in daemon -------------------------------------------------------------------------
Route = Callable[[dict[str, list[str]], Any], tuple[int, Any]]


@dataclass
class FakeDaemon:
    socket_path: Path
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    streams: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)

    def json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = lambda _q, _b: (status, body)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fake: FakeDaemon


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- stdlib name
        return

    def address_string(self) -> str:
        return "uds"

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        fake.requests.append((method, parts.path, query))
        if method == "GET" and parts.path == "/v1/events/stream" and "stream" in fake.streams:
            topics = set(query.get("topics", [""])[0].split(","))
            events = [(t, d) for t, d in fake.streams["stream"] if t in topics]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for topic, data in events:
                self.wfile.write(f"event: {topic}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.write(b": keep-alive\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        route = fake.routes.get((method, parts.path))
        status, answer = (404, {"code": "not_found", "message": f"no route {parts.path}"}) \
            if route is None else route(query, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    path = tmp_path / "api.sock"
    fake = FakeDaemon(path)
    server = _Server(str(path), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, name="fake-daemon", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
