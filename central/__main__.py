"""``python -m central`` = ``edge-central``."""

from central.cli import main

main()
