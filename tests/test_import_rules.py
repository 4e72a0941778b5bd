"""Imports point one way (README, "Architecture"): edge_agent → drivers, sync, pagekit;
central → sync, pagekit; drivers and pagekit import none of our packages; sync imports
neither edge_agent nor central (DESIGN §1), only the leaf ``drivers.backoff``.

Read from the source with ``ast`` (every import, also those inside functions and under
``TYPE_CHECKING``), so a lazy import cannot hide a wrong direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"drivers", "sync", "edge_agent", "central", "pagekit"}
ALLOWED = {
    "drivers": set(),
    "sync": {"drivers"},  # drivers.backoff only: the one backoff lives in the leaf
    "pagekit": set(),
    "edge_agent": {"drivers", "sync", "pagekit"},
    "central": {"sync", "pagekit"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    if package == "sync":  # of drivers, only the backoff
        uses = {str(p.relative_to(REPO)) for p in (REPO / "sync").rglob("*.py")
                if "drivers" in imported_packages(p)}
        assert all("from drivers.backoff import" in (REPO / u).read_text() for u in uses), uses
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            wrong[str(path.relative_to(REPO))] = sorted(bad)
    assert wrong == {}, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_the_rule_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n"
                      "    from edge_agent.ledger import Ledger\n"
                      "    import central.core\n")
    assert imported_packages(module) == {"edge_agent", "central"}
