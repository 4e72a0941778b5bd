"""What the protocol engine (:class:`central.core.Core`) tells an observer on the writer
thread, and what it lets the observer do inside the writer's transaction.

The omnichannel engine (:mod:`central.orders`) is such an observer. It writes its rows
inside the group's transaction (where it may also issue commands) as it hears the events;
:meth:`Watcher.rolled_back` tells it the group was rolled back (it reloads its state), and
:meth:`Watcher.committed` that it was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol


class Tx(Protocol):
    """The writer's open transaction, as an observer may use it."""

    now: float
    """The group's monotonic clock reading."""

    def issue(self, store: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Issue commands (validated like operator commands) in this transaction."""

    def sku_stock(self, sku: str) -> dict[str, tuple[int, int]]:
        """store → exact (on hand, reserved) of one SKU: stock table plus pending deltas."""


class Watcher(Protocol):
    types: frozenset[str]
    """Event types whose parsed body :meth:`on_event` receives."""

    def on_event(self, tx: Tx, store: str, kind: str, event: dict[str, Any]) -> None:
        """A watched event, as it is applied (its stock deltas are already pending)."""

    def on_moves(self, store: str, kind: str, moves: Sequence[tuple[str, int]],
                 holds: Sequence[tuple[str, int]]) -> None:
        """The stock and reserve deltas of one applied event (general path, any type)."""

    def on_heads(self, store: str, heads: Sequence[Any]) -> None:
        """The applied events of one fast-path batch (``seq``, ``type``, ``stock``)."""

    def on_command(self, store: str, command: dict[str, Any]) -> None: ...

    def on_projected(self, cells: Mapping[str, Mapping[str, Sequence[int]]]) -> None:
        """store → sku → [on hand, reserved] deltas just committed to the stock table."""

    def before_commit(self, tx: Tx, contacts: Iterable[str]) -> None:
        """``contacts``: stores heard from in this group (events, live health)."""

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...

    def tick(self, run_write: Callable[[Callable[[Tx], Any]], tuple[Any, list[Any]]]
             ) -> list[Any]:
        """Timer on the writer thread; returns what to publish."""
