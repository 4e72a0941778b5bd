"""The ``edge-agent`` command line (click + rich). Entry point: :func:`main`.

See docs/cli.md for every command and the exit codes.
"""

from __future__ import annotations

import gc

# Importing allocates ~125k objects and frees almost none: the collector's passes during
# imports find nothing and cost ~10 % of start-up CPU (issue 18). Off while importing.
gc.disable()
try:
    # ``run`` (the daemon) registers itself; every other command's module is imported when
    # a command other than ``run`` is asked for (edge_agent.cli.app.AgentGroup)
    from edge_agent.cli import cmd_run as _run
    from edge_agent.cli.app import cli, main
finally:
    gc.enable()

__all__ = ["cli", "main"]
del _run
