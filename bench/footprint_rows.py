"""The footprint table: issue 18's targets and the rows of :mod:`bench.footprint`'s figures.

One job: turn the figures ``bench.footprint.run()`` returns (or a saved run's, which may be
older and lack a phase) into table rows, each beside the bare interpreter or the libraries'
floor measured in the same run. A phase missing from the figures gives one row saying so,
never an exception: the README's table is rendered from saved runs.
"""

from __future__ import annotations

from typing import Any

from bench.common import Row

RSS_TARGET_MIB = 40.0  # issue 18
CPU_TARGET_PCT = 0.3  # issue 18
READY_TARGET_S = 0.5  # issue 18: CPU seconds from start to READY
BUDGET_SHARE = 0.25  # issue 18: "one core at 25 %"
BACKLOG_SLACK_MIB = 5.0  # the backlog lives on disk: RSS may not grow with it

STACK = ("asyncio", "sqlite3", "structlog", "pydantic", "fastapi", "uvicorn", "aiomqtt",
         "serial_asyncio_fast")
"""The libraries the agent needs before READY (its API answers at READY, its devices and
sync run): importing only them is the floor any start with this stack pays."""

G = "footprint"
SHARE = f"{BUDGET_SHARE:.0%} of one core"
STACK_NAME = "libraries alone (" + ", ".join(STACK) + ")"


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _absent(name: str, key: str) -> Row:
    return Row(G, name, None, "", note=f"not measured: no '{key}' in this run's figures "
               "(the run predates that phase of bench.footprint)")


def rows(f: dict[str, Any]) -> list[Row]:
    """Every figure of issue 18's item 1, with its target and its floor."""
    return [*start_rows(f), *idle_rows(f), *backlog_rows(f), *budget_rows(f)]


def start_rows(f: dict[str, Any]) -> list[Row]:
    bare, stack = f.get("bare") or {}, f.get("stack") or {}
    out = [
        Row(G, "start → READY=1 (median wall time; load-dependent, no target)", f["ready_s"],
            "s", bare.get("ready_s"), "bare interpreter → READY",
            note=f"max {f['ready_max_s']:.2f} s"),
        Row(G, "CPU time to READY=1 (median; what a quiet machine would take)",
            f["ready_cpu_s"], "s", bare.get("ready_cpu_s"), "bare interpreter",
            f"≤ {READY_TARGET_S:g} s", _le(f["ready_cpu_s"], READY_TARGET_S)),
    ]
    if stack:
        out.append(Row(G, "CPU time to READY=1 against the libraries' floor", f["ready_cpu_s"],
                       "s", stack.get("ready_cpu_s"), STACK_NAME, f"≤ {READY_TARGET_S:g} s",
                       _le(f["ready_cpu_s"], READY_TARGET_S)))
    else:
        out.append(_absent("CPU time to READY=1 against the libraries' floor", "stack"))
    return out


def idle_rows(f: dict[str, Any]) -> list[Row]:
    idle, bare, stack = f["idle"], f.get("bare") or {}, f.get("stack") or {}
    secs = f"{idle['wall_s']:.0f} s"
    rss, cpu = idle["rss_max_mib"], idle["cpu_pct"]
    out = [Row(G, f"idle RSS, devices connected, {secs}", rss, "MiB", bare.get("rss_mib"),
               "bare interpreter", f"≤ {RSS_TARGET_MIB:g} MiB", rss <= RSS_TARGET_MIB,
               note=f"{idle['device_ptys_open']} device ptys open")]
    if stack:
        out.append(Row(G, "idle RSS against the libraries' floor", rss, "MiB",
                       stack.get("rss_mib"), STACK_NAME, f"≤ {RSS_TARGET_MIB:g} MiB",
                       rss <= RSS_TARGET_MIB))
    else:
        out.append(_absent("idle RSS against the libraries' floor", "stack"))
    out.append(Row(G, f"idle CPU online, {secs}", cpu, "%", None,
                   "none: a sleeping interpreter takes 0", f"≤ {CPU_TARGET_PCT:g} % of a core",
                   cpu <= CPU_TARGET_PCT))
    return out


def backlog_rows(f: dict[str, Any]) -> list[Row]:
    idle, backlog = f["idle"], f.get("backlog")
    if not backlog:
        return [_absent("offline backlog", "backlog")]
    limit = idle["rss_max_mib"] + BACKLOG_SLACK_MIB
    out = [
        Row(G, f"RSS with a {backlog['events']:,}-event offline backlog",
            backlog["rss_max_mib"], "MiB", idle["rss_max_mib"], "idle RSS, empty ledger",
            f"bounded: ≤ idle + {BACKLOG_SLACK_MIB:g} MiB", backlog["rss_max_mib"] <= limit,
            note=f"ledger {backlog['db_mib']:.0f} MiB on disk"),
        Row(G, f"idle CPU offline (broker unreachable, probing), {backlog['wall_s']:.0f} s",
            backlog["cpu_pct"],
            "%", idle["cpu_pct"], "idle CPU online", f"≤ {CPU_TARGET_PCT:g} % of a core",
            backlog["cpu_pct"] <= CPU_TARGET_PCT),
        Row(G, "CPU time to READY=1 with that backlog (PRAGMA quick_check of a big ledger)",
            backlog.get("ready_cpu_s"), "s", f["ready_cpu_s"], "empty ledger",
            f"≤ {READY_TARGET_S:g} s", _le(backlog.get("ready_cpu_s"), READY_TARGET_S),
            note=f"wall {backlog['ready_s']:.2f} s"),
    ]
    after = backlog.get("after_drain")
    if after:
        out += [
            Row(G, "RSS after draining that backlog into the reference central, "
                   f"{after['wall_s']:.0f} s idle",
                after["rss_max_mib"], "MiB", idle["rss_max_mib"], "idle RSS, empty ledger",
                f"≤ idle + {BACKLOG_SLACK_MIB:g} MiB", after["rss_max_mib"] <= limit,
                note=f"broker back → all acked in {backlog['drain_s']:.1f} s (reconnect "
                     "included; a drain figure is bench.sync's, the return bench.reconnect's)"
                     f"; peak (VmHWM) {after['hwm_mib']:.0f} MiB"),
            Row(G, "idle CPU after the drain (online)", after["cpu_pct"], "%", idle["cpu_pct"],
                "idle CPU, empty ledger", f"≤ {CPU_TARGET_PCT:g} % of a core",
                after["cpu_pct"] <= CPU_TARGET_PCT),
        ]
    else:
        out.append(_absent("RSS after draining the backlog into the reference central",
                           "backlog.after_drain"))
    out.append(Row(G, "backlog build (ledger batched ops, 1000/op)",
                   backlog["build_events_per_s"], "ev/s"))
    return out


def budget_rows(f: dict[str, Any]) -> list[Row]:
    b = f.get("budget")
    if not b:
        return [_absent(f"under a CPU budget of {SHARE}", "budget")]
    if b["how"] is None:
        return [Row(G, f"under a CPU budget of {SHARE}", None, "",
                    note=f"not run: {b['why_not']}")]
    idle = b["idle"]
    return [
        Row(G, f"start → READY=1 under {SHARE} (median wall time)", b["ready_s"], "s",
            b["bare_ready_s"], "bare interpreter, same budget", note=b["how"]),
        Row(G, f"CPU time to READY=1 under {SHARE}", b["ready_cpu_s"], "s", f["ready_cpu_s"],
            "no budget", f"≤ {READY_TARGET_S:g} s", _le(b["ready_cpu_s"], READY_TARGET_S)),
        *([Row(G, f"start → READY=1 under {SHARE} against the libraries' floor",
               b["ready_s"], "s", b["stack_ready_s"], STACK_NAME + ", same budget",
               note=f"their CPU {b['stack_ready_cpu_s']:.2f} s")]
          if b.get("stack_ready_s") is not None else []),
        Row(G, f"idle RSS under {SHARE}", idle["rss_max_mib"], "MiB",
            f["idle"]["rss_max_mib"], "no budget", f"≤ {RSS_TARGET_MIB:g} MiB",
            idle["rss_max_mib"] <= RSS_TARGET_MIB),
        Row(G, f"idle CPU under {SHARE}, {idle['wall_s']:.0f} s", idle["cpu_pct"], "%",
            f["idle"]["cpu_pct"], "no budget", f"≤ {CPU_TARGET_PCT:g} % of a core",
            idle["cpu_pct"] <= CPU_TARGET_PCT,
            note=f"throttled in {b['idle_throttled_periods']} of {b['idle_periods']} "
                 "100 ms periods"),
    ]
