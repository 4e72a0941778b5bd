"""The tick loop of a store subsystem (visitors, RFID): tick forever, never stop the agent.

A failing tick is counted and logged by the caller's ``on_error`` and the loop goes on;
on the way out (cancelled) ``final`` saves what is still in memory, and a ledger that is
already closed then is no error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from edge_agent.errors import EdgeAgentError


async def tick_forever(
    tick: Callable[[], Awaitable[object]],
    interval_s: float,
    *,
    on_error: Callable[[Exception], None],
    final: Callable[[], Awaitable[object]],
) -> None:
    """Await ``tick()`` every ``interval_s`` seconds until cancelled, then ``final()``."""
    try:
        while True:
            try:
                await tick()
            except Exception as exc:  # noqa: BLE001 - a subsystem must never stop the agent
                on_error(exc)
            await asyncio.sleep(interval_s)
    finally:
        with contextlib.suppress(EdgeAgentError):
            await final()
