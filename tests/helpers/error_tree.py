"""Checks of an exception tree: the drawing in its root's docstring against the classes,
and that every class is raised (constructed) somewhere in its package."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z][A-Za-z]+)\b")


def drawn_tree(doc: str, root: str) -> dict[str, str | None]:
    """``{class name: drawn parent}`` from the box drawing that starts with ``root``."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    started = False
    for raw in doc.splitlines():
        line = raw[4:] if raw.startswith("    ") else None
        if line is None:
            if started and raw.strip() and not raw.startswith(" "):
                break
            continue
        match = _LINE.match(line)
        if match is None or (match["indent"] and not re.search("[├└]", match["indent"])):
            continue  # a continuation line of a comment
        name, depth = match["name"], len(match["indent"]) // 4
        if not started:
            if name != root or depth:
                continue
            started = True
        if depth == 0 and name != root:
            parents[name] = None  # a second root drawn beside the first
            stack = [(0, name)]
            continue
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def package_exceptions(package: str) -> dict[str, type[BaseException]]:
    """Every exception class defined in ``package`` (all its modules imported)."""
    found: dict[str, type[BaseException]] = {}
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == info.name and not value.__name__.startswith("_")):
                found[value.__name__] = value
    return found


def constructed(package_dir: Path, name: str) -> bool:
    """Whether ``name(`` appears in the package's code other than in its own class line."""
    pattern = re.compile(rf"(?<!class )\b{name}\(")
    return any(pattern.search(path.read_text()) for path in package_dir.rglob("*.py"))
