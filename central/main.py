"""Composition root of the reference central: wires the service, the HTTP app and uvicorn.

``service`` (MQTT + writer threads) and ``api`` (the HTTP app) know nothing of each
other at import time; only this module imports both, so there is no import circle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from central.api import create_app
from central.config import CentralConfig
from central.service import CentralService
from sync.http_limits import MAX_CONNECTIONS, HeadDeadlineProtocol


def http_config(app: Any, config: CentralConfig) -> uvicorn.Config:
    """uvicorn for the central's API: forwarded headers only from the configured proxies."""
    trusted = config.http.trusted_proxies
    return uvicorn.Config(app, host=config.http.host, port=config.http.port,
                          log_level="warning", lifespan="off",
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
                          http=HeadDeadlineProtocol, limit_concurrency=MAX_CONNECTIONS)


async def serve(config: CentralConfig) -> None:
    """Run the central until SIGTERM/SIGINT: MQTT + writer threads, HTTP on uvicorn."""
    service = CentralService(config)
    service.start()
    app = create_app(service)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's generations, which the hot path's allocations would otherwise walk
    # again and again (5-8 % of the central's CPU in the drain benchmark).
    gc.freeze()
    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # we handle SIGTERM/SIGINT ourselves
            yield

    server = _Server(http_config(app, config))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with asyncio.TaskGroup() as tg:
            http = tg.create_task(server.serve(), name="central.http")

            async def _wait_stop() -> None:
                await stopping.wait()
                service.omni.state.closing.set()  # event streams end within 0.5 s
                server.should_exit = True

            tg.create_task(_wait_stop(), name="central.signals")
            await http
            stopping.set()
    finally:
        await asyncio.to_thread(service.stop)
