"""What the visitors and RFID engines share: a bad event is counted, never raised; a
failing tick is reported and the loop goes on; cancelling saves what is in memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from edge_agent.engines import GuardedEngine, tick_forever
from edge_agent.errors import LedgerClosed


@dataclass
class Device:
    name: str


class Picky(GuardedEngine[Device, str]):
    ENGINE = "picky"
    _log = structlog.get_logger("tests.engines")

    def __init__(self) -> None:
        self._figures = {"handle_errors": 0}
        self.seen: list[str] = []

    def _handle(self, device: Device, event: str) -> None:
        if event == "bad":
            raise ValueError("card 4111 1111 1111 1111")  # a message must never be logged
        self.seen.append(f"{device.name}:{event}")


def test_a_bad_event_is_counted_and_logged_by_type_only() -> None:
    engine = Picky()
    with structlog.testing.capture_logs() as logs:
        engine.handle(Device("d1"), "ok")
        engine.handle(Device("d1"), "bad")
        engine.handle(Device("d2"), "ok")
    assert engine.seen == ["d1:ok", "d2:ok"]
    assert engine._figures["handle_errors"] == 1
    assert logs == [{"event": "picky: event not handled", "device": "d1",
                     "error": "ValueError", "log_level": "error"}]


async def test_the_tick_loop_survives_a_failing_tick_and_saves_on_the_way_out() -> None:
    ticks = 0
    errors: list[Exception] = []
    saved = asyncio.Event()
    enough = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            raise RuntimeError("disk hiccup")
        if ticks >= 4:
            enough.set()

    async def final() -> Any:
        saved.set()
        raise LedgerClosed("the ledger is closed")  # shutting down: no error

    task = asyncio.create_task(tick_forever(tick, 0.001, on_error=errors.append, final=final),
                               name="test.tick")
    await asyncio.wait_for(enough.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert saved.is_set()
    assert [str(e) for e in errors] == ["disk hiccup"]
    assert ticks >= 4


async def test_an_error_other_than_the_agents_own_in_final_is_not_hidden() -> None:
    async def tick() -> None:
        await asyncio.sleep(0)

    async def final() -> None:
        raise KeyError("bug")

    task = asyncio.create_task(tick_forever(tick, 0.001, on_error=lambda _e: None, final=final),
                               name="test.tick")
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(KeyError):
        await task
