"""``requirements.lock`` (what ``make venv`` and CI install, ``make lock`` regenerates)
pins every dependency of pyproject.toml and its ``test`` extra inside pyproject's range,
each with hashes, plus the build backend for the no-isolation editable install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;\\]+)")


def pinned() -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) from the lock file."""
    out: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1).split("[")[0])
            out[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = out[current]
            out[current] = (version, hashes + 1)
    return out


def test_every_dependency_is_pinned_in_range_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [Requirement(r) for r in project["project"]["dependencies"]]
    wanted += [Requirement(r) for r in project["project"]["optional-dependencies"]["test"]]
    wanted += [Requirement(r) for r in project["build-system"]["requires"]]
    locked = pinned()
    for req in wanted:
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert name in locked, f"{req} is missing from requirements.lock: run make lock"
        version, hashes = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject wants {req}: run make lock")
        assert hashes >= 1
    assert all(hashes >= 1 for _, hashes in locked.values())
