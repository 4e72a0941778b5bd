"""Human output of the CLI: one time format (ISO-8601 UTC, as journalctl --output
short-iso and git's --date=iso-strict show it) and one line per live event.

Pure functions; the commands print what they return. ``--json`` never goes through here.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sync.errors import WireFormatError
from sync.wire import parse_ts

TIME_KEYS = frozenset({"ts", "at", "since", "opened_at", "closed_at", "last_ack_at",
                       "oldest_ts", "entered", "left", "started_at", "updated_at"})


def iso(value: Any) -> str | None:
    """A Unix time or a protocol timestamp as ``2026-12-04T20:55:01Z`` (UTC, seconds)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str):
        try:
            moment = parse_ts(value).astimezone(UTC)
        except (WireFormatError, ValueError):
            return value
    else:
        return str(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(time.time()) or ""


def _lines(value: list[Any]) -> str:
    parts = []
    for line in value:
        if isinstance(line, dict) and "sku" in line:
            parts.append(f"{line.get('qty', line.get('counted', '?'))}x{line['sku']}")
        else:
            parts.append(_value("", line))
    return f"[{', '.join(parts)}]"


def _value(key: str, value: Any) -> str:
    if key in TIME_KEYS:
        return iso(value) or ""
    if isinstance(value, list):
        return _lines(value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def event_line(event: str, data: Any, received: float | None = None) -> str:
    """``2026-12-04T20:55:01Z  scan         till-1  code=4006381333931 mode=sale``:
    time, topic, device or terminal, then every other field that has a value."""
    when = iso(data.get("ts")) if isinstance(data, dict) and data.get("ts") else None
    head = f"{when or iso(received if received is not None else time.time())}  {event:<13}"
    if not isinstance(data, dict):
        return f"{head}{data}"
    who = data.get("device") or data.get("terminal") or ""
    rest = " ".join(f"{k}={_value(k, v)}" for k, v in data.items()
                    if v is not None and v not in ("", []) and k not in ("ts", "device")
                    and not (k == "terminal" and who == v))
    return f"{head}{who:<10}{' ' + rest if rest else ''}".rstrip()
