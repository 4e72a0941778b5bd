"""Doctor checks of central over HTTPS: the health endpoint with this store's identity,
and the clock offset its ``Date`` header shows."""

from __future__ import annotations

import email.utils
import ssl
import time
from typing import TYPE_CHECKING, Any

from edge_agent import AGENT_NAME
from edge_agent.config import Config
from edge_agent.doctor.result import CheckResult, passed

if TYPE_CHECKING:
    import httpx



CLOCK_WARN_MS = 2_000
CLOCK_FAIL_MS = 30_000


def check_central(config: Config, timeout: float = 10.0,
                  transport: httpx.BaseTransport | None = None
                  ) -> tuple[CheckResult, CheckResult]:
    """GET the snapshot URL with the token (headers only) and compare the Date header."""
    import httpx  # noqa: PLC0415 -- not loaded by `edge-agent run` (the daemon)

    name, clock = "central snapshot", "clock"
    if config.central.url is None:
        return (CheckResult(name, "warn", "central.url is not set: the store cannot resync",
                            "set central.url in the configuration"),
                CheckResult(clock, "skip", "needs central.url"))
    url = f"{config.central.url.rstrip('/')}/v1/stores/{config.store.id}/snapshot"
    headers = {"User-Agent": AGENT_NAME}
    if config.central.token is not None:
        headers["Authorization"] = f"Bearer {config.central.token.get_secret_value()}"
    verify: Any = True
    if config.central.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(config.central.ca_file))
    try:
        with httpx.Client(timeout=timeout, verify=verify, transport=transport) as client:
            sent = time.time()
            with client.stream("GET", url, headers=headers) as response:
                received = time.time()
                status = response.status_code
                date = response.headers.get("date")
    except httpx.HTTPError as exc:
        return (CheckResult(name, "fail", f"{url}: {type(exc).__name__}: {exc}",
                            "check central.url, DNS and the firewall; `curl -I` the URL"),
                CheckResult(clock, "skip", "central unreachable"))
    if status in (401, 403):
        result = CheckResult(
            name, "fail", f"{url}: HTTP {status} (token refused)",
            "install the store's token as the central-token credential "
            "(/etc/credstore/edge-agent/central-token) or central.token_file; ask central "
            "operations for a new one")
    elif status == 404:
        result = CheckResult(name, "fail", f"{url}: HTTP 404",
                             "central does not know this store id, or central.url is wrong")
    elif status >= 400:
        result = CheckResult(name, "fail", f"{url}: HTTP {status}",
                             "central has a problem; ask central operations")
    else:
        result = passed(name, f"{url}: HTTP {status}")
    return result, clock_offset_result(date, (sent + received) / 2)


def clock_offset_result(date_header: str | None, local_ts: float) -> CheckResult:
    name = "clock"
    if not date_header:
        return CheckResult(name, "skip", "central sent no Date header")
    try:
        remote = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return CheckResult(name, "skip", f"unreadable Date header {date_header!r}")
    offset_ms = int((local_ts - remote) * 1000)
    # The Date header has one-second resolution: allow it.
    shown = f"local clock {offset_ms:+d} ms against central (±1 s resolution)"
    fix = "enable time sync: `timedatectl set-ntp true`, check `timedatectl timesync-status`"
    if abs(offset_ms) > CLOCK_FAIL_MS:
        return CheckResult(name, "fail", shown, fix)
    if abs(offset_ms) > CLOCK_WARN_MS + 1000:
        return CheckResult(name, "warn", shown, fix)
    return passed(name, shown)
