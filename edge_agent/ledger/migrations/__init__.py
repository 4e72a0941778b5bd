"""Schema migrations, one module per version: ``m0001_core.py``, ``m0002_….py``, …

Each module defines ``VERSION`` (its number) and ``SQL`` (statements, no transaction
control). :func:`edge_agent.ledger.schema.migrate` runs each pending one in a single
transaction together with ``PRAGMA user_version``, so a crash leaves the old or the new
version, never a mix.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def discover() -> list[Migration]:
    """All migrations shipped with the agent, in version order."""
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m") or not info.name[1:5].isdigit():
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(module.VERSION), info.name, str(module.SQL)))
    found.sort(key=lambda m: m.version)
    for index, migration in enumerate(found, start=1):
        if migration.version != index:
            raise RuntimeError(f"migration versions must be 1..N without gaps: {found}")
    return found
