"""serve_api's supervision: one TaskGroup of listeners, readiness by event, a listener
that stops on its own ends the whole API with an error, cancellation leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

import edge_agent.api.server as server_module
from edge_agent.api.app import create_app
from edge_agent.api.server import ApiServerError, serve_api
from edge_agent.config import Config
from edge_agent.services import AgentServices
from tests.edge_agent.retail.seed import config, open_ledger
from tests.helpers.ports import free_port


def _config(directory: Path) -> Config:
    token = directory / "token"
    token.write_text("s3cret-token\n")
    return config(api={"socket": str(directory / "api.sock"),
                       "tcp": {"port": free_port(), "token_file": str(token)}})


def _api_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("api.")]


@contextlib.asynccontextmanager
async def _serving(directory: Path) -> AsyncIterator[tuple[asyncio.Task[None], httpx.AsyncClient]]:
    """serve_api started (both listeners ready) and a client on its Unix socket."""
    ledger = open_ledger(directory / "l.db")
    try:
        cfg = _config(directory)
        ready = asyncio.Event()
        task = asyncio.create_task(serve_api(
            create_app(AgentServices(config=cfg, ledger=ledger)), cfg.api, ready=ready))
        try:
            async with asyncio.timeout(60):
                await ready.wait()
            async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(
                    uds=str(directory / "api.sock")), base_url="http://agent") as client:
                yield task, client
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        ledger.close()


async def test_ready_then_cancel_leaves_no_listener_behind(short_dir: Path) -> None:
    async with _serving(short_dir) as (task, client):
        assert sorted(t.get_name() for t in _api_tasks()) == ["api.tcp", "api.unix"]
        assert (await client.get("/v1/status")).status_code == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _api_tasks() == []
    assert not (short_dir / "api.sock").exists()


async def test_a_listener_that_stops_by_itself_ends_the_api_with_an_error(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make = server_module._server

    def one_request_only(app: server_module.ASGIApp) -> server_module._Server:
        server = make(app)
        server.config.limit_max_requests = 1  # uvicorn then leaves on its own
        return server

    monkeypatch.setattr(server_module, "_server", one_request_only)
    async with _serving(short_dir) as (task, client):
        with contextlib.suppress(httpx.HTTPError):
            await client.get("/v1/status")
        with pytest.raises(ApiServerError, match="stopped unexpectedly"):
            async with asyncio.timeout(60):
                await task
    assert _api_tasks() == []  # the TCP listener was stopped too
    assert not (short_dir / "api.sock").exists()


def test_the_server_signals_listening_by_event() -> None:
    server = server_module._Server(uvicorn.Config(app=None))
    assert not server.listening.is_set()
