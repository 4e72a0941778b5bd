"""Check that the installed environment satisfies pyproject's own ranges (the package's
requirements and its ``test`` extra): run by ``make venv`` after installing
``requirements.lock``, so a lock that misses a dependency added to pyproject.toml fails
with "run make lock" instead of an ImportError somewhere in the tests.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement

PACKAGE = "edge-agent"
EXTRAS = ("", "test")


def problems() -> list[str]:
    found = []
    for line in metadata.requires(PACKAGE) or []:
        req = Requirement(line)
        if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in EXTRAS):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append(f"{req.name} is not installed (needs {req})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} is installed, pyproject.toml wants {req}")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        sys.stderr.write(f"requirements.lock is stale: {problem}\n")
    if found:
        sys.stderr.write("run `make lock` (needs PyPI), commit requirements.lock, then "
                         "`make venv` again\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
