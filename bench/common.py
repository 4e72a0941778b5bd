"""Shared helpers of the benchmark suite: timing, percentiles, figure rows, the table, JSON.

A :class:`Row` is one printed figure: its value, the ceiling (or naive alternative)
measured in the same run, the ratio between the two, and the target it is held to.
Ratios are what survive a noisy, shared machine; absolute figures drift.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_agent.ledger import Ledger, Tx
from tests.helpers.mosquitto import Broker, running_broker

__all__ = [
    "Broker",
    "Row",
    "best_of",
    "build_backlog",
    "fmt",
    "machine",
    "markdown_table",
    "percentile",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "running_broker",
    "timed",
    "write_json",
]

MIB = 1024 * 1024
BACKLOG_STORE = "S001"  # the store id bench.sync's drain and its in-bench central use


# --------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, on the monotonic high-resolution clock."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest of ``repeat`` calls (the least disturbed by other load on the machine)."""
    best, result = math.inf, None
    for _ in range(max(1, repeat)):
        seconds, result = timed(fn)
        best = min(best, seconds)
    return best, result


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


# --------------------------------------------------------------------------- /proc
def proc_rss_bytes(pid: int, key: str = "VmRSS") -> int:
    """Resident set size (or ``VmHWM``, the peak) of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"{key} not in /proc/{pid}/status")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- backlog
SALE_TEMPLATE = {
    "terminal": "till-1",
    "currency": "EUR",
    "total": "2.50",
    "payments": [{"method": "cash", "amount": "2.50"}],
}


def build_backlog(path: Path, n: int, store: str = BACKLOG_STORE, chunk: int = 1000) -> float:
    """Record ``n`` sale facts offline in a fresh ledger, ``chunk`` per op; events/s.

    The same shape as bench.sync's backlog (a one-line sale touching one of 5000 SKUs),
    written through the ledger's own batched op so the file is the real format.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with Ledger.open(path, store) as ledger:

        def op(tx: Tx, base: int, count: int) -> None:
            for i in range(base, base + count):
                sku = f"SKU-{i % 5000:05d}"
                data = dict(SALE_TEMPLATE)
                data["sale_id"] = f"s{i}"
                data["lines"] = [{"sku": sku, "qty": 1, "unit_price": "2.50",
                                  "line_total": "2.50"}]
                tx.append("sale", data, stock=[(sku, -1)])

        futures = [ledger.submit(functools.partial(op, base=base, count=min(chunk, n - base)))
                   for base in range(0, n, chunk)]
        for future in futures:
            future.result()
    return n / (time.perf_counter() - started)


# --------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One figure of the table. ``ratio`` = value / ceiling (computed when both are set)."""

    group: str
    name: str
    value: float | None
    unit: str
    ceiling: float | None = None
    ceiling_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    error: str = ""
    ratio: float | None = field(default=None)

    def __post_init__(self) -> None:
        if self.ratio is None and _finite(self.value) and _finite(self.ceiling) \
                and self.ceiling:
            self.ratio = float(self.value) / float(self.ceiling)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "ceiling", "ratio"):
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = None
        return out


def error_row(group: str, exc: BaseException | str) -> Row:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return Row(group, "(benchmark failed)", None, "", error=text[:300])


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


_UNITS_SCALED = {"/s", "ev/s", "rows/s", "msg/s", "frames/s", "dicts/s", "req/s",
                 "facts/s", "reads/s", "events/s", "B/s", "visits/s"}


def fmt(value: float | None, unit: str = "") -> str:
    """Human form of a figure: thousands separators, sensible precision, its unit."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit == "MiB":
        text = f"{value:.1f}"
    elif unit in ("ms", "s", "%", "µs"):
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    elif unit in _UNITS_SCALED or abs(value) >= 1000:
        if abs(value) >= 1e6:
            text = f"{value / 1e6:.2f}M"
        elif abs(value) >= 1e4:
            text = f"{value / 1e3:.1f}k"
        else:
            text = f"{value:,.0f}"
    elif isinstance(value, int) or float(value).is_integer():
        text = f"{int(value):,}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _ratio_text(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "—"
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def _met_text(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**NO**")


def markdown_table(rows: list[Row]) -> str:
    """A GitHub-flavoured Markdown table (pasteable into the README)."""
    head = ["area", "figure", "value", "ceiling / naive (same run)", "ratio", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            cells = [r.group, r.name, "error", r.error.replace("|", "/"), "—", r.target, "—"]
        else:
            ceiling = fmt(r.ceiling, r.unit) if r.ceiling is not None else ""
            if r.ceiling_name:
                ceiling = f"{ceiling} ({r.ceiling_name})" if ceiling else r.ceiling_name
            name = f"{r.name} ({r.note})" if r.note else r.name
            cells = [r.group, name, fmt(r.value, r.unit), ceiling or "—",
                     _ratio_text(r.ratio), r.target or "—", _met_text(r.met)]
        lines.append("| " + " | ".join(c.replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine
def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with_path = Path("/proc/cpuinfo")
    if with_path.exists():
        for line in with_path.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": _version([mosquitto, "-h"], r"mosquitto version (\S+)"),
        "paho_mqtt": _package("paho-mqtt"),
        "aiomqtt": _package("aiomqtt"),
        "orjson": _package("orjson"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['nproc']} x {info['cpu_model']}, {info['memory_gib']} GiB, "
            f"Linux {info['kernel']}, Python {info['python']}, SQLite {info['sqlite']}, "
            f"mosquitto {info['mosquitto']}, paho-mqtt {info['paho_mqtt']}, "
            f"orjson {info['orjson']}; load average at start {info['load_average']}"
            + (f", at the end {info['load_average_end']}" if "load_average_end" in info else ""))


# --------------------------------------------------------------------------- output
def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(document), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def print_rows(title: str, rows: list[Row]) -> None:
    print(title)
    print(markdown_table(rows))
    sys.stdout.flush()


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory removed afterwards (even when the benchmark fails)."""
    import tempfile  # noqa: PLC0415 - local: only the benches that need one pay for it

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
