"""``run``: the daemon in the foreground (what the systemd service starts).

Its own module, light to import: ``edge-agent run`` loads no other command's module
(the group in :mod:`edge_agent.cli.app` loads them when another command is asked for),
and the daemon itself only once the command runs.
"""

from __future__ import annotations

import gc
import importlib
import sys

from edge_agent.cli._base import json_option, state
from edge_agent.cli.app import cli


@cli.command()
@json_option
def run() -> None:
    """Run the agent in the foreground (what the systemd service starts).

    With --json, logs are JSON lines whatever logging.format says.
    """
    st = state()
    config = st.config()
    if st.json:
        config = config.model_copy(
            update={"logging": config.logging.model_copy(update={"format": "json"})})
    # Imported when used: the daemon pulls in everything (drivers, sync, API server).
    gc.disable()  # until READY: the daemon collects once then (release_startup_garbage)
    daemon = importlib.import_module("edge_agent.daemon")
    code = daemon.run_daemon(config)
    sys.exit(int(code))
