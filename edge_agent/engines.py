"""What the store's in-memory engines (visitors, RFID) share: a guarded event entry and a
tick loop, so a bad event or a failing tick never stops the router or the agent.

:class:`GuardedEngine` gives an engine its ``handle`` (counts and logs what its
``_handle`` raised, never re-raises); :func:`tick_forever` runs its tick until cancelled,
then saves what is still in memory (a ledger that is already closed then is no error).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from edge_agent.errors import EdgeAgentError


class NamedDevice(Protocol):
    @property
    def name(self) -> str: ...


DeviceT = TypeVar("DeviceT", bound=NamedDevice)
EventT = TypeVar("EventT")


class GuardedEngine(Generic[DeviceT, EventT]):
    """An engine the router feeds on the loop: ``handle`` never raises, never blocks."""

    ENGINE: ClassVar[str]
    """Its name in log lines (``rfid``, ``visitors``)."""
    _log: ClassVar[Any]
    _figures: dict[str, int]

    def handle(self, device: DeviceT, event: EventT) -> None:
        """Take one device event into memory. Never raises, never blocks."""
        try:
            self._handle(device, event)
        except Exception as exc:  # noqa: BLE001 - a bad event must not break the router
            self._figures["handle_errors"] += 1
            # Only the type: a message could quote an id.
            self._log.error(f"{self.ENGINE}: event not handled", device=device.name,
                            error=type(exc).__name__)

    def _handle(self, device: DeviceT, event: EventT) -> None:
        raise NotImplementedError


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
