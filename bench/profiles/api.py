"""Profile of the API sale path (issue 18: API sales ≥ 0.25x the ledger's own rate).

One job: cProfile the server side of ``POST /v1/sales`` over the Unix socket, as
:mod:`bench.api` runs it (16 keep-alive clients, closed loop), and the same server stack
with a trivial route (same request model and header, the handler records nothing): top
functions by own time, and each layer's CPU per request (uvicorn + h11/httptools parse,
FastAPI/Starlette routing, pydantic validation, our handler, asyncio). cProfile sees the
server's event-loop thread only: the ledger's writer thread (SQLite, fsync) is the time
the loop spends waiting (``select``/``epoll``), reported as such.
"""

from __future__ import annotations

import asyncio
import pstats
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from bench.api import _closed_loop, _seed
from bench.common import scratch_dir
from bench.profiles import short, write_profile

CLIENTS = 16
SECONDS = 8.0
LAYERS = (
    ("waiting (epoll/select: the ledger thread, the clients)", ("select", "epoll", "poll")),
    ("uvicorn + h11/httptools (HTTP parse, transport)", ("uvicorn", "h11", "httptools")),
    ("FastAPI + Starlette (routing, dependencies, responses)", ("fastapi", "starlette")),
    ("pydantic (validation, serialisation)", ("pydantic",)),
    ("edge_agent (the handler, RetailService, ledger calls)", ("edge_agent", "drivers", "sync")),
    ("json / orjson", ("json", "orjson")),
    ("asyncio + anyio (the loop, tasks, futures)", ("asyncio", "anyio")),
)


def layer_of(filename: str, function: str) -> str:
    path = filename.rsplit("site-packages/", maxsplit=1)[-1]
    for label, keys in LAYERS:
        for key in keys:
            if (key in ("select", "epoll", "poll") and key in function
                    and filename == "~") or path.startswith((key + "/", key + ".")) \
                    or f"/{key}/" in filename:
                return label
    return "other (stdlib, builtins)"


def threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """Each thread of ``pid``: (name, ns on a CPU, ns waiting on the run queue for one)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu, wait, _ = (task / "schedstat").read_text().split()
            out[int(task.name)] = ((task / "comm").read_text().strip(), int(cpu), int(wait))
        except (OSError, ValueError):
            continue
    return out


def sched_lines(pid: int, before: dict[int, tuple[str, int, int]],
                after: dict[int, tuple[str, int, int]]) -> list[str]:
    lines = []
    for tid, (name, cpu, wait) in sorted(after.items()):
        _, cpu0, wait0 = before.get(tid, (name, 0, 0))
        if cpu - cpu0 > 1e7:  # threads that ran at least 10 ms
            role = "main: the event loop" if tid == pid else "a worker: ledger writer/reader"
            lines.append(f"   thread {tid} ({role}): on a CPU {(cpu - cpu0) / 1e9:.2f} s, "
                         f"waiting on the run queue for a CPU {(wait - wait0) / 1e9:.2f} s, "
                         f"of {SECONDS:g} s")
    return lines


def profile_server(work: Path, flag: str, sock: Path
                   ) -> tuple[pstats.Stats, dict[str, float], list[str]]:
    out = work / f"{flag.strip('-')}.prof"
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "cProfile", "-o", str(out), "-m",
                               "bench.api", flag, str(work)], stdout=subprocess.PIPE,
                              text=True, cwd=root)
    try:
        if server.stdout is None:
            raise RuntimeError("no pipe to the server")
        for line in server.stdout:
            if line.strip() == "READY":
                break
        before = threads(server.pid)
        result = asyncio.run(_closed_loop(sock, CLIENTS, SECONDS))
        sched = sched_lines(server.pid, before, threads(server.pid))
    finally:
        # the real server stops cleanly on SIGTERM; the trivial one is a bare uvicorn, which
        # re-raises SIGINT after its own shutdown (cProfile still writes its file)
        server.send_signal(signal.SIGTERM if flag == "--serve" else signal.SIGINT)
        server.wait(timeout=60)
    return pstats.Stats(str(out)), result, sched


def summary(title: str, stats: pstats.Stats, result: dict[str, float],
            sched: list[str]) -> list[str]:
    requests = result["sales_per_s"] * SECONDS
    raw = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table there
    total = sum(v[2] for v in raw.values())
    layers: dict[str, float] = defaultdict(float)
    for (filename, _line, function), v in raw.items():
        layers[layer_of(filename, function)] += v[2]
    out = [f"{title}: {result['sales_per_s']:.0f} req/s with {CLIENTS} clients for "
           f"{SECONDS:g} s, {result.get('errors', 0)} errors; server main thread "
           f"{total:.2f} s profiled ({total / requests * 1e6:.0f} µs per request, cProfile "
           "inflates it)", "", "   own time by layer (µs per request, share):"]
    for label, seconds in sorted(layers.items(), key=lambda kv: -kv[1]):
        out.append(f"   {seconds / requests * 1e6:8.1f} µs  {seconds / total:5.1%}  {label}")
    out += ["", "   the server's threads during the load, as the kernel scheduled them "
            "(/proc/<pid>/task/*/schedstat):", *sched]
    out += ["", "   top 20 functions by own time:"]
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:20]
    for (filename, line, function), v in top:
        where = short(filename)
        out.append(f"   {v[2]:7.3f} s {v[1]:8d} calls  {function}  ({where}:{line})")
    return out


def main() -> None:
    with scratch_dir("bench-profile-api-") as work:
        _seed(work / "api.db")
        sale, sale_result, sale_sched = profile_server(work, "--serve", work / "api.sock")
        trivial, trivial_result, trivial_sched = profile_server(work, "--serve-trivial",
                                                                work / "trivial.sock")
        shutil.rmtree(work / "pycache", ignore_errors=True)
    ratio = sale_result["sales_per_s"] / trivial_result["sales_per_s"]
    body = [*summary("POST /v1/sales (the real route)", sale, sale_result, sale_sched), "",
            *summary("the same stack, trivial route (the HTTP stack's ceiling)", trivial,
                     trivial_result, trivial_sched), "",
            f"real route / trivial route: {ratio:.2f}x (both under cProfile, same run)"]
    write_profile("api", "API sale path: the server's CPU per request, by layer", body)


if __name__ == "__main__":
    main()
