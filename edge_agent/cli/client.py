"""Talking to the running daemon over its Unix socket (httpx), with SSE streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.cli._base import CliError, DaemonUnreachable

if TYPE_CHECKING:
    import httpx

BASE_URL = "http://edge-agent"
PERMISSION_HINT = ("run it with sudo, or join the edge-agent group: "
                   "sudo usermod -aG edge-agent $USER (then log in again)")


class ApiError(CliError):
    """The daemon answered with an error ({"code","message"})."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the agent refused: {message} ({code}, HTTP {status})")
        self.status = status
        self.api_code = code


class DaemonClient:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def _client(self, timeout: float | None = None) -> httpx.Client:
        import httpx  # noqa: PLC0415 -- not loaded by `edge-agent run` (the daemon)

        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)),
            base_url=BASE_URL,
            timeout=httpx.Timeout(self.timeout if timeout is None else timeout),
        )

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        if not self.socket_path.exists():
            return DaemonUnreachable(f"daemon not running (no socket at {self.socket_path})")
        if "Permission denied" in str(exc):
            return DaemonUnreachable(
                f"no permission to use {self.socket_path}",
                hint=PERMISSION_HINT)
        return DaemonUnreachable(f"daemon unreachable on {self.socket_path}: {exc}")

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None) -> Any:
        import httpx  # noqa: PLC0415 -- not loaded by `edge-agent run` (the daemon)

        if not self.socket_path.exists():
            raise DaemonUnreachable(f"daemon not running (no socket at {self.socket_path})")
        try:
            with self._client() as client:
                response = client.request(method, path, params=params, json=body)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return _decode(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                  if v is not None} or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def stream(self, path: str, *, params: dict[str, Any] | None = None,
               timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Server-sent events as ``(event, data)``; ``data`` decoded from JSON when it is."""
        import httpx  # noqa: PLC0415 -- not loaded by `edge-agent run` (the daemon)

        if not self.socket_path.exists():
            raise DaemonUnreachable(f"daemon not running (no socket at {self.socket_path})")
        try:
            with self._client(timeout=timeout) as client, client.stream(
                "GET", path, params=params, timeout=httpx.Timeout(timeout, connect=5.0)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                yield from parse_sse(response.iter_lines())
        except httpx.ReadTimeout:
            return  # quiet for ``timeout`` seconds: the caller's duration is over
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc


def _decode(response: httpx.Response) -> Any:
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    if response.status_code >= 400:
        if isinstance(data, dict):
            err = data.get("error", data) if isinstance(data.get("error"), dict) else data
            code = str(err.get("code") or "error")
            message = str(err.get("message") or err.get("detail") or response.reason_phrase)
        else:
            code, message = "error", response.text[:200] or response.reason_phrase
        raise ApiError(response.status_code, code, message)
    return data


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """Parse the text/event-stream format (event/data fields, blank line ends an event)."""
    event = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield event, value
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value_text = line.partition(":")
        value_text = value_text.removeprefix(" ")
        if name == "event":
            event = value_text
        elif name == "data":
            data.append(value_text)
