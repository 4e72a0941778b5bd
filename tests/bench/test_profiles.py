"""bench.profiles: the pieces that read real processes (importtime, smaps, every thread's
cProfile) and the header each docs/profiles file starts with."""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import bench.profiles
from bench.profiles import api, drain, durable, memory, start, threaded


def test_importtime_of_a_real_import_is_summarised_with_who_pulled_what() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import rich.console"],
                          capture_output=True, text=True, check=True)
    entries = start.parse_importtime(done.stderr)
    names = {name for _s, _c, _d, name in entries}
    assert "rich.console" in names
    assert "rich" in names
    assert any(depth == 0 and name == "rich.console" for _s, _c, depth, name in entries)
    text = "\n".join(start.summary(entries))
    assert "top 20 top-level imports" in text
    chain = next(line for line in text.splitlines() if line.strip().startswith("rich:"))
    assert chain.rstrip().endswith("rich.console")  # the chain ends at the top-level import


def test_smaps_of_this_process_groups_its_memory() -> None:
    text = "\n".join(memory.smaps(os.getpid()))
    assert "Rss total" in text
    assert "anonymous" in text
    assert "libpython" in text or "file python" in text
    threads = len(os.listdir(f"/proc/{os.getpid()}/task"))
    assert f"threads ({threads}):" in text


def test_every_thread_started_inside_the_block_is_profiled(tmp_path: Path) -> None:
    def busy_in_thread() -> int:
        return sum(i * i for i in range(20_000))

    out = tmp_path / "all.prof"
    with threaded.profiling(out):
        worker = threading.Thread(target=busy_in_thread, name="profiled-worker")
        worker.start()
        worker.join()
    functions = {key[2] for key in pstats.Stats(str(out)).stats}  # type: ignore[attr-defined]
    assert "busy_in_thread" in functions  # python -m cProfile would miss it


def test_work_is_sorted_into_layers_and_kinds() -> None:
    assert api.layer_of("~", "<method 'poll' of 'select.epoll' objects>").startswith("waiting")
    assert api.layer_of("/v/site-packages/uvicorn/protocols/http/h.py", "send") \
        .startswith("uvicorn")
    assert api.layer_of("/w/edge_agent/retail/money.py", "parse_money").startswith("edge_agent")
    assert drain.kind_of("~", "<method 'get' of '_queue.SimpleQueue' objects>") \
        .startswith("waiting")
    assert drain.kind_of("~", "<built-in method _hashlib.openssl_sha256>").startswith("SHA")
    assert drain.kind_of("~", "<method 'execute' of 'sqlite3.Connection' objects>") \
        .startswith("SQLite")


def test_the_slowest_writes_are_split_into_their_parts() -> None:
    fast = {"submit": 0.0, "op_start": 0.001, "op_end": 0.0011, "commit": 0.0012,
            "committed": 0.0015, "done": 0.002}
    slow = {"submit": 0.0, "op_start": 0.050, "op_end": 0.0501, "commit": 0.051,
            "committed": 0.070, "done": 0.080}
    text = "\n".join(durable.report([fast] * 99 + [slow], [0.0001, 0.02], [0.0003, 0.016]))
    queue = next(line for line in text.splitlines() if "queue wait" in line)
    assert queue.split()[2:4] == ["50.00", "ms"]  # the slowest 1 %: 50 ms queued
    commit = next(line for line in text.splitlines() if "WAL write + fsync" in line)
    assert commit.split()[-4:] == ["19.00", "ms", "0.30", "ms"]
    assert "p99" in text
    assert "bare write+fsync" in text


def test_a_profile_file_starts_with_command_date_load_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.profiles, "DOCS", tmp_path)
    path = bench.profiles.write_profile("demo", "A title", ["body line"])
    lines = path.read_text().splitlines()
    assert lines[0] == "A title"
    assert lines[2] == "command: .venv/bin/python -m bench.profiles demo"
    assert [line.split(":")[0] for line in lines[3:6]] == ["date", "load", "machine"]
    assert lines[-1] == "body line"


def test_an_unknown_profile_name_is_refused() -> None:
    from bench.profiles.__main__ import main  # noqa: PLC0415

    assert main(["nope"]) == 2


def test_paths_in_profiles_carry_no_machine_prefix() -> None:
    import json as stdlib_json  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    import pydantic  # noqa: PLC0415

    import edge_agent.ledger  # noqa: PLC0415

    assert bench.profiles.short(str(pydantic.__file__)) == "pydantic/__init__.py"
    assert bench.profiles.short(str(edge_agent.ledger.__file__)) == "edge_agent/ledger/__init__.py"
    assert bench.profiles.short(str(stdlib_json.__file__)) == "<stdlib>/json/__init__.py"
    assert sysconfig.get_paths()["stdlib"] not in bench.profiles.short(
        str(stdlib_json.__file__))
