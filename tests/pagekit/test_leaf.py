"""pagekit is a leaf: it imports no package of ours, so edge_agent and central (which may
not import each other) can both use it; drivers and sync do not use it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"edge_agent", "central", "drivers", "sync", "pagekit", "tests", "bench"}


def _imported_tops(package: str) -> dict[str, set[str]]:
    """Top-level package of every absolute import, per module file of ``package``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tops: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = tops
    return found


def test_pagekit_imports_nothing_of_ours_but_itself() -> None:
    modules = _imported_tops("pagekit")
    assert len(modules) >= 5
    wrong = {m: sorted(t & (OURS - {"pagekit"})) for m, t in modules.items()
             if t & (OURS - {"pagekit"})}
    assert wrong == {}


def test_both_pages_use_the_kit_and_not_each_other() -> None:
    edge, central = _imported_tops("edge_agent"), _imported_tops("central")
    assert any("pagekit" in t for t in edge.values())
    assert any("pagekit" in t for t in central.values())
    assert not [m for m, t in edge.items() if "central" in t]
    assert not [m for m, t in central.items() if "edge_agent" in t]
    for package in ("drivers", "sync"):
        assert not [m for m, t in _imported_tops(package).items() if "pagekit" in t]
