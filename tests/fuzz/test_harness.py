"""The atheris harness imports and replays without atheris; with it, it fuzzes briefly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import atheris_harness
from tests.fuzz.targets import TARGETS
from tests.helpers.processes import REPO


def test_replay_runs_saved_inputs_through_every_target(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, blob in enumerate([b"", b"\x02" * 40, b'{"v":1,"store":"S001","commands":[]}',
                              bytes(range(256)), b"\xbb\x02\x22\x00\x05" + b"\x00" * 9]):
        (corpus / f"in{i}").write_bytes(blob)
    for name in TARGETS:
        assert atheris_harness.replay(name, [corpus]) == 5


def test_replay_reports_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(data: bytes) -> None:
        raise RuntimeError(data.hex())

    monkeypatch.setitem(TARGETS, "boom", boom)
    (tmp_path / "crash").write_bytes(b"\x01")
    with pytest.raises(RuntimeError, match="01"):
        atheris_harness.replay("boom", [tmp_path / "crash"])


def test_atheris_fuzzes_a_parser_briefly(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_harness", "em4100", "-runs=2000",
         str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=100, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
