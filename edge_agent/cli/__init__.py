"""The ``edge-agent`` command line (click + rich). Entry point: :func:`main`.

See docs/cli.md for every command and the exit codes.
"""

from __future__ import annotations

from edge_agent.cli import commands as _commands  # registers every command on ``cli``
from edge_agent.cli.app import cli, main

__all__ = ["cli", "main"]
del _commands
