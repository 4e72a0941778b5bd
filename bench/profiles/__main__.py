"""``python -m bench.profiles [NAME ...]``: write the named profiles (all by default)."""

from __future__ import annotations

import importlib
import sys

NAMES = ("memory", "start", "durable", "api", "drain")


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown profile(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}",
              file=sys.stderr)
        return 2
    for name in names:
        importlib.import_module(f"bench.profiles.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
