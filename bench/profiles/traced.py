"""The real agent under ``tracemalloc``, dumping its top allocations when asked.

One job: ``python bench/profiles/traced.py TRIGGER OUT --config X run`` starts tracemalloc,
then runs ``edge_agent``'s own ``__main__`` with the remaining arguments. A thread waits for
the file TRIGGER (written by :mod:`bench.profiles.memory` after READY=1 and a settle) and
writes to OUT the top allocations by line and by file, the traced total, and SQLite's own
heap (``sqlite3_memory_used()`` of the libsqlite3 this process loaded). Run as a script, not
``-m bench...``, so that none of the bench's imports are counted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import runpy
import sys
import sysconfig
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = 1
ROOT = str(Path(__file__).resolve().parents[2])
STDLIB = sysconfig.get_paths()["stdlib"]


def short(path: str) -> str:
    """A source path without this machine's prefixes (as ``bench.profiles.short``, which
    this script does not import: nothing of the bench may be counted)."""
    if "site-packages/" in path:
        return path.rsplit("site-packages/", maxsplit=1)[-1]
    for prefix, name in ((ROOT + "/", ""), (STDLIB + "/", "<stdlib>/")):
        if path.startswith(prefix):
            return name + path[len(prefix):]
    return path


def sqlite_heap() -> str:
    """SQLite's own malloc total and high-water mark (page caches, schema, statements)."""
    name = ctypes.util.find_library("sqlite3")
    maps = Path("/proc/self/maps").read_text().splitlines()
    loaded = [line.split()[-1] for line in maps if "libsqlite3" in line]
    lib = ctypes.CDLL(loaded[0] if loaded else (name or "libsqlite3.so.0"))
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    used, high = lib.sqlite3_memory_used(), lib.sqlite3_memory_highwater(0)
    return (f"SQLite heap (sqlite3_memory_used, every connection's page cache, schema and "
            f"statements): {used / 2**20:.2f} MiB now, {high / 2**20:.2f} MiB high-water")


def dump(out: Path) -> None:
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"Python heap traced by tracemalloc: {traced / 2**20:.2f} MiB now, "
             f"{peak / 2**20:.2f} MiB peak (objects only: not arenas' slack, not C libraries)",
             sqlite_heap(), "", "top 25 allocations by source line:"]
    lines += [f"  {s.size / 1024:9.1f} KiB {s.count:7d} blocks  {short(s.traceback[0].filename)}:"
              f"{s.traceback[0].lineno}" for s in snap.statistics("lineno")[:25]]
    by_package: dict[str, int] = {}
    for stat in snap.statistics("filename"):
        path = short(stat.traceback[0].filename)
        key = "<frozen/stdlib>" if path.startswith("<") else path.split("/")[0]
        by_package[key] = by_package.get(key, 0) + stat.size
    lines += ["", "traced Python memory by package (top 15):"]
    lines += [f"  {size / 2**20:7.2f} MiB  {name}" for name, size in
              sorted(by_package.items(), key=lambda kv: -kv[1])[:15]]
    modules: dict[str, int] = {}
    for module in list(sys.modules):
        top = module.split(".")[0]
        modules[top] = modules.get(top, 0) + 1
    lines += ["", f"modules imported: {len(sys.modules)}; by top-level package (top 25):"]
    lines += ["  " + ", ".join(f"{name} {count}" for name, count in
                               sorted(modules.items(), key=lambda kv: -kv[1])[:25])]
    out.write_text("\n".join(lines) + "\n")


def watch(trigger: Path, out: Path) -> None:
    while not trigger.exists():
        time.sleep(0.1)
    dump(out)


def main() -> None:
    trigger, out = Path(sys.argv[1]), Path(sys.argv[2])
    tracemalloc.start(FRAMES)
    threading.Thread(target=watch, args=(trigger, out), name="traced-dump",
                     daemon=True).start()
    sys.argv = ["edge_agent", *sys.argv[3:]]
    runpy.run_module("edge_agent", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
