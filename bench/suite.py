"""The whole benchmark suite: every benchmark next to this machine's ceilings, one table.

``python -m bench [--quick] [--only a,b] [--skip a,b] [--json PATH]`` (``make bench``).

Each benchmark module (``bench/<name>.py``, ``run(quick) -> dict``) runs in its own
child process (``python -m bench.suite --child NAME``): a crash, a hang (timeout) or an
exception in one is recorded as an error row and the suite goes on. The ceilings run
first, in the same suite run, so every figure sits next to a ceiling measured on the
same machine under the same load. Results: a Markdown table on stdout (pasteable into
the README), ``bench/results/latest.json`` and ``bench/results/latest.md``; each child's
own output in ``bench/results/logs/<name>.log``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    Row,
    error_row,
    machine,
    machine_line,
    markdown_table,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# The last full run, committed: the README's table is rendered from it (``--readme``).
LAST_RUN = Path(__file__).resolve().parent / "last-run.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
# A module not in ADAPTERS below supplies its own ``rows(figures)`` (bench/<name>.py).
ORDER = ("ceilings", "ledger", "drivers", "sync", "reconnect", "api", "visitors", "customers",
         "central", "central_history", "central_scale", "central_fleet", "omni", "footprint",
         "scaling", "carddata", "rfid", "pages")
TIMEOUT_S = {"full": 2400.0, "quick": 900.0, "tiny": 180.0}
P99_TARGET_MS = 100.0


# --------------------------------------------------------------------------- child
def call_run(name: str, quick: bool, tiny: bool) -> dict[str, Any]:
    """Import ``bench.<name>`` and call its ``run`` (with ``tiny`` when it takes one)."""
    module = importlib.import_module(f"bench.{name}")
    run: Callable[..., dict[str, Any]] = module.run
    kwargs: dict[str, Any] = {"quick": quick or tiny}
    if tiny and "tiny" in inspect.signature(run).parameters:
        kwargs["tiny"] = True
    result = run(**kwargs)
    if not isinstance(result, dict):
        raise TypeError(f"bench.{name}.run returned {type(result).__name__}, not a dict")
    return result


def child_main(name: str, quick: bool, tiny: bool, out: Path) -> int:
    started = time.perf_counter()
    try:
        document: dict[str, Any] = {"ok": call_run(name, quick, tiny)}
    except BaseException as exc:  # noqa: BLE001 - recorded for the parent, never raised there
        tail = traceback.format_exception(exc)[-3:]
        document = {"error": f"{type(exc).__name__}: {exc}", "traceback": "".join(tail)}
    document["seconds"] = time.perf_counter() - started
    write_json(out, document)
    return 0


def run_child(name: str, mode: str, logs: Path) -> dict[str, Any]:
    """One benchmark in its own process; {"ok": figures} or {"error": text}, plus seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    out = logs / f"{name}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.suite", "--child", name, "--child-out", str(out)]
    if mode != "full":
        argv.append(f"--{mode}")
    started = time.perf_counter()
    with (logs / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(TIMEOUT_S[mode])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"error": f"timed out after {TIMEOUT_S[mode]:.0f} s",
                    "seconds": time.perf_counter() - started}
    if not out.exists():
        return {"error": f"the benchmark process died (exit code {proc.returncode}); "
                         f"see {logs / (name + '.log')}",
                "seconds": time.perf_counter() - started}
    document: dict[str, Any] = json.loads(out.read_text())
    return document


# --------------------------------------------------------------------------- adapters
def _get(d: dict[str, Any], *path: str) -> Any:
    value: Any = d
    for key in path:
        value = value[key]
    return value


def generic_rows(group: str, figures: dict[str, Any], prefix: str = "") -> list[Row]:
    """Every number of an unknown result shape, one row each (units guessed from names)."""
    rows: list[Row] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if key == "targets":
                rows += [Row(group, f"target {t}", None, "", met=bool(ok))
                         for t, ok in value.items() if isinstance(ok, bool)]
            else:
                rows += generic_rows(group, value, name + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            unit = ("ms" if key.endswith("_ms") else "MiB" if key.endswith("_mib")
                    else "/s" if key.endswith(("_per_s", "_s_rate")) or "_per_s_" in key
                    else "")
            rows.append(Row(group, name, float(value), unit))
    return rows


def ceilings_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    from bench import ceilings  # noqa: PLC0415

    return ceilings.rows(f)


def ledger_rows(f: dict[str, Any], c: dict[str, Any]) -> list[Row]:
    g = "ledger"
    full = f["raw_executemany_full_rows_s"]
    concurrent = f["ledger_concurrent_facts_s"]
    p99 = f["latency_at_1000_s_p99_ms"]
    return [
        Row(g, "64 concurrent callers, one sale fact each, FULL", concurrent,
            "facts/s", full, "raw executemany FULL (ledger bench)", "≥ 0.25x raw",
            concurrent / full >= 0.25),
        Row(g, "one op of 1000 sale facts, FULL", f["ledger_batched_facts_s"], "facts/s", full,
            "raw executemany FULL (ledger bench)"),
        Row(g, "write → durable at 1000 facts/s, p50", f["latency_at_1000_s_p50_ms"], "ms"),
        Row(g, "write → durable at 1000 facts/s, p99", p99, "ms", target="≤ 10 ms",
            met=p99 <= 10.0),
    ]


def drivers_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    g = "drivers"
    rows = []
    for name, label in (("em4100", "EM4100 parse + dedup, 16 tags repeating"),
                        ("uhf", "UHF notices parse + dedup, 64 tags repeating"),
                        ("em4100_unique", "EM4100, every frame a new tag"),
                        ("uhf_unique", "UHF, every frame a new tag")):
        value = f[f"{name}_driver_frames_per_s"]
        bare = f[f"{name}_bare_find_frames_per_s"]
        worst = name.endswith("_unique")  # the frame cache's worst case: no target set
        rows.append(Row(g, label, value, "frames/s", bare, "bare bytes.find loop",
                        "" if worst else "≥ 0.5x bare", None if worst else value / bare >= 0.5))
    return rows


def visitors_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    g = "visitors"
    rows = []
    for name, label in (("repeat", "presence reads → visits, shoppers read repeatedly"),
                        ("unique", "presence reads → visits, every read a new shopper")):
        value = f[f"{name}_sessioniser_reads_per_s"]
        bare = f[f"{name}_bare_dedup_reads_per_s"]
        worst = name == "unique"
        rows.append(Row(g, label, value, "reads/s", bare, "bare dict dedup loop",
                        "" if worst else "≥ 0.3x bare", None if worst else value / bare >= 0.3,
                        note=f"{int(f[f'{name}_reads']):,} reads"))
    return rows


def sync_rows(f: dict[str, Any], c: dict[str, Any]) -> list[Row]:
    g = "sync"
    drain = f["drain"]
    rate = drain["events_per_s"]
    central = f.get("central", "?")
    rows = [
        Row(g, f"drain {f['events']:,}-event backlog → central ({central})", rate, "ev/s",
            f["ceiling_read_events_per_s"], "ledger read of the backlog",
            "≥ 250k ev/s", rate >= 250_000, note=f"{drain['seconds']:.1f} s"),
        Row(g, "drain vs the naive agent (one awaited publish per event)", rate, "ev/s",
            f["naive_events_per_s"], "naive", "≥ 50x naive",
            rate / f["naive_events_per_s"] >= 50),
    ]
    echo = f.get("ceiling_store_broker_events_per_s")
    if isinstance(echo, int | float):
        rows.append(Row(g, "drain vs store → broker → ack echo (nothing applied)", rate, "ev/s",
                        echo, "store side alone"))
        rows.append(Row(g, "store side alone (echo) vs naive", echo, "ev/s",
                        f["naive_events_per_s"], "naive"))
    mqtt = c.get("mqtt_qos1_big_events_per_s")
    if isinstance(mqtt, int | float):
        rows.append(Row(g, "drain vs raw paho QoS 1 (20 KB, window 20)", rate, "ev/s", mqtt,
                        "ceilings: paho, no central"))
    lat = f["latency"]
    lost = lat.get("lost", 0)
    rows += [
        Row(g, "online commit → central applied, 100 ev/s, p50", lat["p50_ms"], "ms"),
        Row(g, "online commit → central applied, 100 ev/s, p99", lat["p99_ms"], "ms",
            target=f"≤ {P99_TARGET_MS:g} ms", met=lat["p99_ms"] <= P99_TARGET_MS,
            note=f"{lat['count']} events, max {lat['max_ms']:.0f} ms, {lost} unacked"),
    ]
    return rows


def api_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    g = "api"
    ceiling = f["ledger_direct_concurrent_sales_per_s"]
    api = f["api_sales_per_s"]
    p99 = f["at_200_per_s_p99_ms"]
    return [
        Row(g, f"sales over the Unix socket, {f.get('api_clients', '?')} clients", api,
            "req/s", ceiling, "ledger.write of the same sale, concurrent",
            "≥ 0.25x ledger", api / ceiling >= 0.25,
            note=f"{f.get('api_errors', 0)} errors"),
        Row(g, "sales over the Unix socket vs bare HTTP stack", api, "req/s",
            f["http_stack_trivial_per_s"], "same server, trivial route"),
        Row(g, "in-process RetailService.sale", f["service_inprocess_sales_per_s"], "req/s",
            ceiling, "ledger.write of the same sale, concurrent"),
        Row(g, "sale latency at 200 sales/s, p50", f["at_200_per_s_p50_ms"], "ms"),
        Row(g, "sale latency at 200 sales/s, p99", p99, "ms", target="≤ 25 ms",
            met=p99 <= 25.0, note=f"max {f.get('at_200_per_s_max_ms')} ms"),
    ]


def central_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    g = "central"
    broker = f["ceiling_broker_events_per_s"]
    raw = f["ceiling_sqlite_rows_per_s"]
    shape = f"{f['stores']:,} stores x {f['events_per_store']}"
    rows = []
    for name, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        part = f.get(name)
        if not isinstance(part, dict):
            continue
        if "events_per_s" not in part:
            rows.append(Row(g, f"fan-in {shape}, {label}", None, "",
                            error=f"skipped: {part.get('skipped', part.get('error', '?'))}"))
            continue
        rows.append(Row(g, f"fan-in {shape}, {label}, applied + acked", part["events_per_s"],
                        "ev/s", broker, "raw paho QoS 1 to the broker",
                        note=f"ack p99 {part.get('ack_latency_p99_ms')} ms"))
    sq = f["sqlite"]["events_per_s"]
    rows.append(Row(g, "fan-in SQLite vs raw SQLite insert", sq, "ev/s", raw,
                    "raw executemany FULL"))
    paced = f.get("sqlite_paced")
    if isinstance(paced, dict) and "ack_latency_p99_ms" in paced:
        rows.append(Row(g, "paced fan-in, ack latency p99", paced["ack_latency_p99_ms"], "ms",
                        note=f"{paced.get('events_per_s')} ev/s"))
    return rows


def omni_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    from bench import omni  # noqa: PLC0415

    return omni.rows(f)


def footprint_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    from bench import footprint_rows  # noqa: PLC0415

    return footprint_rows.rows(f)




def scaling_rows(f: dict[str, Any], _: dict[str, Any]) -> list[Row]:
    from bench import scaling  # noqa: PLC0415

    return scaling.rows(f)


def module_rows(name: str) -> Callable[[dict[str, Any], dict[str, Any]], list[Row]] | None:
    """The ``rows(figures)`` of ``bench/<name>.py``, if it has one."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError:
        return None
    rows = getattr(module, "rows", None)
    return None if rows is None else lambda f, _c: list(rows(f))


ADAPTERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[Row]]] = {
    "ceilings": ceilings_rows, "ledger": ledger_rows, "drivers": drivers_rows,
    "sync": sync_rows, "api": api_rows, "central": central_rows, "visitors": visitors_rows,
    "footprint": footprint_rows, "scaling": scaling_rows, "omni": omni_rows,
}


def rows_for(name: str, document: dict[str, Any], ceilings: dict[str, Any]) -> list[Row]:
    """Table rows of one benchmark's result; never raises."""
    if "error" in document:
        return [error_row(name, str(document["error"]))]
    figures = document.get("ok", {})
    adapter = ADAPTERS.get(name) or module_rows(name)
    if adapter is not None:
        try:
            return adapter(figures, ceilings)
        except Exception as exc:  # noqa: BLE001 - shape changed: show the raw numbers instead
            rows = generic_rows(name, figures)
            for row in rows[:1]:
                row.note = f"raw figures (adapter: {type(exc).__name__}: {exc})"
            return rows
    return generic_rows(name, figures)


# --------------------------------------------------------------------------- suite
def run_suite(names: list[str], mode: str, json_path: Path,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    info = machine()
    logs = json_path.parent / "logs"
    raw: dict[str, Any] = {}
    rows: list[Row] = []
    ceilings: dict[str, Any] = {}
    for name in names:
        echo(f"[bench] {name} …")
        try:
            document = run_child(name, mode, logs)
        except Exception as exc:  # noqa: BLE001 - the suite never stops on one benchmark
            document = {"error": f"{type(exc).__name__}: {exc}"}
        raw[name] = document
        if name == "ceilings" and "ok" in document:
            ceilings = document["ok"]
        part = rows_for(name, document, ceilings)
        rows += part
        seconds = document.get("seconds")
        took = f" ({seconds:.0f} s)" if isinstance(seconds, int | float) else ""
        echo(f"[bench] {name} done{took}")
        echo(markdown_table(part))
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    command = "make bench" if mode == "full" else f"python -m bench --{mode}"
    document = {
        "started": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "mode": mode,
        "command": command,
        "machine": info,
        "rows": [r.as_dict() for r in rows],
        "raw": raw,
        "targets_missed": [f"{r.group}: {r.name}" for r in rows if r.met is False],
        "errors": [f"{r.group}: {r.error}" for r in rows if r.error],
    }
    write_json(json_path, document)
    if mode == "full" and set(names) == set(ORDER):
        write_json(LAST_RUN, document)  # the whole suite at full size: the README's source
    table = markdown_table(rows)
    text = (f"## Benchmarks ({mode} run, {started_at:%Y-%m-%d})\n\n"
            f"Machine: {machine_line(info)}.\n\nReproduce: `{command}` "
            f"(`.venv/bin/python -m bench{' --' + mode if mode != 'full' else ''}`); "
            f"took {document['duration_s']:.0f} s.\n\n{table}\n")
    json_path.with_suffix(".md").write_text(text)
    echo("")
    echo(text)
    if document["targets_missed"]:
        echo("targets missed: " + "; ".join(document["targets_missed"]))
    if document["errors"]:
        echo("errors: " + "; ".join(document["errors"]))
    echo(f"JSON: {json_path}")
    return document


def render(json_path: Path) -> str:
    """The Markdown of a saved run, its raw figures put through the current adapters."""
    saved: dict[str, Any] = json.loads(json_path.read_text())
    raw: dict[str, Any] = saved["raw"]
    ceilings = raw.get("ceilings", {}).get("ok", {})
    rows = [row for name, document in raw.items() for row in rows_for(name, document, ceilings)]
    mode = saved.get("mode", "full")
    return (f"## Benchmarks ({mode} run, {saved['started'][:10]})\n\n"
            f"Machine: {machine_line(saved['machine'])}.\n\nReproduce: `{saved['command']}`; "
            f"took {saved['duration_s']:.0f} s.\n\n{markdown_table(rows)}\n")


def readme_block(json_path: Path = LAST_RUN) -> str:
    """The README's generated part: the rendered table of a saved run, between markers."""
    table = render(json_path).strip().replace("## Benchmarks", "### Benchmarks", 1)
    return f"{BEGIN}\n{table}\n{END}"


def write_readme(json_path: Path = LAST_RUN, readme: Path = README) -> None:
    """Replace the README's table (between the markers) with that of a saved run."""
    text = readme.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + readme_block(json_path) + text[stop:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (minutes)")
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the table of a saved run (no benchmark is run)")
    parser.add_argument("--readme", action="store_true",
                        help=f"rewrite the README's table from {LAST_RUN.name} (no benchmark "
                             "is run); a full run of the whole suite writes that file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.quick, args.tiny, args.child_out)
    if args.render:
        print(render(args.render))
        return 0
    if args.readme:
        write_readme()
        return 0
    names = [n for n in args.only.split(",") if n] or list(ORDER)
    skip = {n for n in args.skip.split(",") if n}
    names = [n for n in names if n not in skip]
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    run_suite(names, mode, args.json, echo=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
