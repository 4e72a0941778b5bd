from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from edge_agent.api.app import create_app
from edge_agent.api.server import serve_api
from edge_agent.ledger import Ledger
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from tests.edge_agent.retail.seed import config, open_ledger


@dataclass
class Api:
    client: httpx.AsyncClient
    services: AgentServices
    ledger: Ledger
    socket: Path
    app: FastAPI


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ea-api-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_api(directory: Path, *, store: dict[str, Any] | None = None,
                      retail_class: type[RetailService] = RetailService,
                      **api: Any) -> AsyncIterator[Api]:
    socket_path = directory / "api.sock"
    ledger = open_ledger(directory / "ledger.db")
    cfg = config(api={"socket": str(socket_path), "max_body_bytes": 4096, **api})
    if store:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update=store)})
    services = AgentServices(config=cfg, ledger=ledger)
    retail = retail_class(ledger, cfg.store, controls=cfg.controls, hub=services.hub)
    app = create_app(services, retail=retail)
    ready = asyncio.Event()
    task = asyncio.create_task(serve_api(app, cfg.api, ready=ready), name="test.api")
    try:
        async with asyncio.timeout(10):
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                await task
            waiter.cancel()
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=10) as client:
            yield Api(client, services, ledger, socket_path, app)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


@pytest.fixture
async def api(short_dir: Path) -> AsyncIterator[Api]:
    async with running_api(short_dir) as running:
        yield running
