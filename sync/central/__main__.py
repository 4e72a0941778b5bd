"""``python -m sync.central`` = ``edge-central``."""

from sync.central.cli import main

main()
