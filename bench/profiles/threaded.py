"""cProfile of every thread of a program, one merged ``.prof`` file at its exit.

One job: ``python bench/profiles/threaded.py OUT MODULE [ARGS...]`` runs ``MODULE`` as
``__main__`` with a ``cProfile.Profile`` enabled in the main thread and in each thread it
starts (``threading.setprofile`` installs one on a thread's first event), then writes all
their statistics, merged, to OUT. ``python -m cProfile`` sees the main thread only; the
central applies events in writer threads. Also usable in process: :func:`profiling`.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any


@contextmanager
def profiling(out: Path) -> Iterator[list[cProfile.Profile]]:
    """Profile this thread and every thread started inside the block; merged into OUT."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start(_frame: FrameType, _event: str, _arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()

    main = cProfile.Profile()
    profiles.append(main)
    threading.setprofile(start)
    main.enable()
    try:
        yield profiles
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type,unused-ignore]  # None clears
        with lock:
            stats = pstats.Stats(*profiles)
        stats.dump_stats(out)


def main() -> None:
    out, module = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    with profiling(out):
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
