"""What the running daemon shares with its surfaces (API, CLI over the socket, router).

The daemon builds one :class:`AgentServices`; the API app, the scan router and the
visitors engine receive it instead of reaching for globals. Optional parts (sync, the
visitors engine) are ``None`` when not configured.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger

if TYPE_CHECKING:
    from drivers.events import DeviceStatus


class SyncControl(Protocol):
    """What the surfaces may ask of the running sync (implemented by sync.store.StoreSync)."""

    @property
    def connected(self) -> bool: ...

    def request_sync_now(self) -> None: ...

    def request_resync(self, reason: str) -> None: ...

    def figures(self) -> dict[str, Any]: ...


@dataclass
class AgentServices:
    config: Config
    ledger: Ledger
    hub: EventHub = field(default_factory=EventHub)
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    version: str = __version__
    state: str = "starting"
    sync: SyncControl | None = None
    device_statuses: Mapping[str, DeviceStatus] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def uptime_s(self) -> int:
        return int(time.monotonic() - self.started_monotonic)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by
