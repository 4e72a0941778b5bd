"""``edge-agent doctor``'s run: every check a technician needs, in order, each with a
plain-language fix (the CLI renders the results).

:func:`run_checks` runs them; a check that depends on an earlier one (TLS needs TCP,
authentication needs TLS) is skipped with the reason when that one failed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.config import Config
from edge_agent.doctor.broker import broker_checks
from edge_agent.doctor.central import check_central
from edge_agent.doctor.local import (
    check_config,
    check_config_permissions,
    check_database_file,
    check_device,
    check_disk,
    check_state_dir,
)
from edge_agent.doctor.result import CheckResult
from edge_agent.doctor.service import check_agent, check_systemd

if TYPE_CHECKING:
    pass



def run_checks(
    config_path: Path | str | None,
    *,
    agent_status: Callable[[Config], tuple[dict[str, Any] | None, str | None]] | None = None,
    network: bool = True,
    timeout: float = 5.0,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    config_result, config = check_config(config_path)
    results.append(config_result)
    if config is None:
        return results
    results.append(check_config_permissions(config))
    results.append(check_database_file(config))
    results.append(check_state_dir(config))
    results.append(check_disk(config))
    results.extend(check_device(d) for d in config.devices)
    agent_connected = False
    if agent_status is not None:
        status, error = agent_status(config)
        results.append(check_agent(status, error))
        agent_connected = bool(status and (status.get("broker") or {}).get("connected"))
    if network:
        results.extend(broker_checks(config, timeout, agent_connected=agent_connected))
        results.extend(check_central(config, timeout=max(timeout, 5.0)))
    results.append(check_systemd())
    return results
