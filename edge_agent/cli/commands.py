"""Imports every command module so each registers itself on :data:`edge_agent.cli.app.cli`."""

from __future__ import annotations

from edge_agent.cli import (
    cmd_core,
    cmd_db,
    cmd_devices,
    cmd_ops,
    cmd_orders,
    cmd_rfid,
    cmd_run,
)

__all__ = ["cmd_core", "cmd_db", "cmd_devices", "cmd_ops", "cmd_orders", "cmd_rfid", "cmd_run"]
