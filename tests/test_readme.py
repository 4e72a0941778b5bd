"""The README's examples, executed: they cannot drift from what the tools do.

Blocks are marked in README.md with an HTML comment on the line before the fence:

- ``<!-- readme-test: file NAME -->``: the block's content is written to ``NAME``;
- ``<!-- readme-test: transcript -->``: ``$ command`` lines, each followed by its exact
  output (stdout and stderr);
- ``<!-- readme-test: demo -->``: shell commands run as they are, from a directory laid
  out like the repository's root, against a running demo store (``make demo``);
- ``<!-- readme-test: demo-central -->``: the same, for the demo's reference central
  (needs mosquitto).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.edge_agent.test_demo import demo

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"^<!-- readme-test: (?P<kind>[a-z-]+)(?: (?P<arg>\S+))? -->\s*$")
DEMO_CENTRAL_URL = "http://127.0.0.1:18720"


@dataclass(frozen=True)
class Block:
    kind: str
    arg: str | None
    text: str
    line: int


def blocks(kind: str | None = None) -> list[Block]:
    lines = (ROOT / "README.md").read_text().splitlines()
    found: list[Block] = []
    for index, line in enumerate(lines):
        match = MARK.match(line)
        if match is None:
            continue
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        assert start < len(lines), f"README.md:{index + 1}: a mark without a block"
        assert lines[start].startswith("```"), f"README.md:{index + 1}: no fence after mark"
        end = start + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        found.append(Block(match["kind"], match["arg"], "\n".join(lines[start + 1:end]) + "\n",
                           start + 1))
    return [b for b in found if kind is None or b.kind == kind]


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT), "COLUMNS": "160"}


def test_readme_has_marked_blocks() -> None:
    kinds = {b.kind for b in blocks()}
    assert {"file", "transcript", "demo", "demo-central"} <= kinds


def test_transcripts_print_what_the_readme_shows(tmp_path: Path) -> None:
    for block in blocks("file"):
        assert block.arg is not None
        (tmp_path / block.arg).write_text(block.text)
    for block in blocks("transcript"):
        command: str | None = None
        expected: list[str] = []
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    steps.append((command, expected))
                command, expected = line[2:], []
            else:
                expected.append(line)
        if command is not None:
            steps.append((command, expected))
        for command, want in steps:
            run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 timeout=120, check=False)
            assert run.stdout.splitlines() == want, \
                f"README.md:{block.line}: `{command}` printed\n{run.stdout}"


def run_block(block: Block, cwd: Path, central_url: str | None) -> None:
    text = block.text
    if central_url is not None:
        text = text.replace(DEMO_CENTRAL_URL, central_url)
    run = subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", text], cwd=cwd, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, f"README.md:{block.line}: the block failed:\n{run.stdout}"
    assert "Traceback" not in run.stdout, run.stdout
    assert '{"code":' not in run.stdout, f"README.md:{block.line}: an API error:\n{run.stdout}"


@pytest.mark.timeout(600)
def test_demo_blocks_run_against_a_demo_store(tmp_path: Path) -> None:
    """The commands are copied as they are; the one substitution is central's port when
    another program holds the demo's (the demo then says which it took)."""
    has_broker = (shutil.which("mosquitto") or
                  shutil.which("mosquitto", path="/usr/sbin")) is not None
    state = tmp_path / "demo-state"
    with demo(state) as run:
        run.wait_for(r"till T1: SALE recorded")
        if has_broker:
            run.wait_for(r"sync: central → store: ack")
        # the repository's layout: config/demo.toml is what this demo runs
        (tmp_path / "config").mkdir()
        shutil.copy(state / "agent.toml", tmp_path / "config" / "demo.toml")
        (tmp_path / "config" / "demo.toml").chmod(0o640)
        settings = tomllib.loads((state / "agent.toml").read_text())
        for block in blocks("demo"):
            run_block(block, tmp_path, None)
        if has_broker:
            for block in blocks("demo-central"):
                run_block(block, tmp_path, settings["central"]["url"])
