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
from bench.profiles import write_profile

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


def profile_server(work: Path, flag: str, sock: Path) -> tuple[pstats.Stats, dict[str, float]]:
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
        result = asyncio.run(_closed_loop(sock, CLIENTS, SECONDS))
    finally:
        # the real server stops cleanly on SIGTERM; the trivial one is a bare uvicorn, which
        # re-raises SIGINT after its own shutdown (cProfile still writes its file)
        server.send_signal(signal.SIGTERM if flag == "--serve" else signal.SIGINT)
        server.wait(timeout=60)
    return pstats.Stats(str(out)), result


def summary(title: str, stats: pstats.Stats, result: dict[str, float]) -> list[str]:
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
    out += ["", "   top 20 functions by own time:"]
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:20]
    for (filename, line, function), v in top:
        where = filename.split("site-packages/")[-1].split("/h-foot/")[-1]
        out.append(f"   {v[2]:7.3f} s {v[1]:8d} calls  {function}  ({where}:{line})")
    return out


def main() -> None:
    with scratch_dir("bench-profile-api-") as work:
        _seed(work / "api.db")
        sale, sale_result = profile_server(work, "--serve", work / "api.sock")
        trivial, trivial_result = profile_server(work, "--serve-trivial", work / "trivial.sock")
        shutil.rmtree(work / "pycache", ignore_errors=True)
    ratio = sale_result["sales_per_s"] / trivial_result["sales_per_s"]
    body = [*summary("POST /v1/sales (the real route)", sale, sale_result), "",
            *summary("the same stack, trivial route (the HTTP stack's ceiling)", trivial,
                     trivial_result), "",
            f"real route / trivial route: {ratio:.2f}x (both under cProfile, same run)"]
    write_profile("api", "API sale path: the server's CPU per request, by layer", body)


if __name__ == "__main__":
    main()
