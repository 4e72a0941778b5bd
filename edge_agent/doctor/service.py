"""Doctor checks of the service: the systemd unit's state and the running agent's own
status (sync link, backlog, resync)."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from edge_agent.doctor.result import CheckResult, passed

if TYPE_CHECKING:
    pass



def check_systemd(unit: str = "edge-agent", systemctl: str | None = None) -> CheckResult:
    name = "systemd unit"
    exe = systemctl or shutil.which("systemctl")
    if exe is None:
        return CheckResult(name, "skip", "systemctl not found (not a systemd system)")
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed arguments
            [exe, "is-active", unit], capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult(name, "skip", f"systemctl failed: {exc}")
    state = proc.stdout.strip()
    if state == "active":
        return passed(name, f"{unit}: active")
    if state in ("inactive", "failed") and _load_state(exe, unit) == "not-found":
        return CheckResult(name, "warn", f"{unit}.service is not installed",
                           "install it with `sudo systemd/install.sh` (see the README)")
    if state in ("inactive", "failed", "activating", "deactivating", "reloading"):
        return CheckResult(name, "fail" if state in ("inactive", "failed") else "warn",
                           f"{unit}: {state}",
                           f"`journalctl -u {unit} -n 50` shows why; start it with "
                           f"`systemctl start {unit}`")
    reason = (proc.stderr.strip() or state or "no answer").splitlines()[0]
    return CheckResult(name, "skip", f"systemd is not running here ({reason})")


def _load_state(exe: str, unit: str) -> str:
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed arguments
            [exe, "show", "-p", "LoadState", "--value", unit], capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


def check_agent(status: dict[str, Any] | None, error: str | None = None) -> CheckResult:
    """What the running agent says about itself (from ``GET /v1/status``)."""
    name = "agent"
    if status is None:
        return CheckResult(name, "warn", f"daemon not reachable ({error or 'not running'})",
                           "start it: `systemctl start edge-agent`; `journalctl -u edge-agent` "
                           "shows why it stopped")
    broker = status.get("broker") or {}
    outbox = status.get("outbox") or {}
    age = outbox.get("oldest_age_s")
    link = "connected" if broker.get("connected") else "NOT connected"
    detail = (f"{status.get('state')}, broker {link}, outbox "
              f"{outbox.get('pending', 0)} pending"
              + (f", oldest {int(age)} s" if isinstance(age, int | float) else ""))
    if not broker.get("connected"):
        return CheckResult(name, "fail", detail,
                           "see the broker checks above; the agent retries with backoff and "
                           "keeps every sale in its outbox meanwhile")
    if isinstance(age, int | float) and age > 600:
        return CheckResult(name, "warn", detail,
                           "central is not acknowledging; check central's alerts for this "
                           "store (quarantine) and `edge-agent sync watch`")
    if status.get("resync_needed"):
        return CheckResult(name, "warn", detail + ", resync pending",
                           "see the central snapshot check")
    return passed(name, detail)
