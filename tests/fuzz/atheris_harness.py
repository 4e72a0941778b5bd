"""Long-running coverage-guided fuzzing with atheris (not part of the default test run).

    .venv/bin/pip install atheris
    .venv/bin/python -m tests.fuzz.atheris_harness TARGET [libFuzzer options] [CORPUS_DIR]
    .venv/bin/python -m tests.fuzz.atheris_harness --list
    .venv/bin/python -m tests.fuzz.atheris_harness --replay TARGET FILE_OR_DIR...

TARGET is one of :data:`tests.fuzz.targets.TARGETS`. ``--replay`` runs saved inputs (a
crash file, a corpus) through a target without atheris, e.g. to turn a finding into a
regression test. This module imports cleanly when atheris is not installed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from tests.fuzz.targets import TARGETS

atheris: Any
try:
    atheris = importlib.import_module("atheris")
except ImportError:  # the default test run does not need it
    atheris = None


def replay(target: str, paths: list[Path]) -> int:
    """Run every file under ``paths`` through ``target``; the number of inputs run."""
    fn = TARGETS[target]
    count = 0
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            fn(file.read_bytes())
            count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--list":
        print("\n".join(sorted(TARGETS)))
        return 0
    if len(argv) > 2 and argv[1] == "--replay":
        print(f"replayed {replay(argv[2], [Path(p) for p in argv[3:]])} inputs")
        return 0
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(__doc__)
        return 2
    if atheris is None:
        print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    fn = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], fn)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
