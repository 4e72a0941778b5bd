"""The README's main command: the demo store runs the whole loop on one machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_sells_by_scanning_and_central_follows(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.demo", "--duration", "30", "--state-dir",
         str(tmp_path / "demo-state")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("store: seq")]
    assert lines, result.stdout
    last = lines[-1]
    seq = int(re.search(r"seq (\d+)", last).group(1))  # type: ignore[union-attr]
    assert seq > 3, last  # sales and receipts were recorded from scans
    assert " online " in last, last
    assert "cseq 2" in last, last  # catalog and opening stock came from central
    stock = dict(re.findall(r"([A-Z0-9-]+)=(-?\d+)", last.split("central stock:")[1]))
    # 20 opening units each; scanning sold some, the back room received some
    assert any(int(v) != 20 for v in stock.values()), last
    agent_log = (tmp_path / "demo-state" / "logs" / "agent.log").read_text()
    assert "Traceback" not in agent_log
