"""The README's fulfilment-queue walkthrough, run as written (curl over the Unix socket)
against the real API, and its quoted refusal checked against the real answer."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

from tests.edge_agent.api.conftest import Api
from tests.edge_agent.orders.helpers import assign
from tests.edge_agent.orders.test_api import api, post, short_dir  # noqa: F401 - fixtures
from tests.edge_agent.retail.seed import event_payloads

README = Path(__file__).resolve().parents[3] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## The store's fulfilment queue")
    return text[start:text.index("\n## ", start + 3)]


async def test_readme_walkthrough_runs(api: Api) -> None:  # noqa: F811 - fixture
    assign(api.ledger, "W1001", {"A-100": 2}, code="4711")
    [script] = re.findall(r"```sh\n(.*?)```", section(), re.DOTALL)
    script = script.replace("/run/edge-agent/api.sock", str(api.socket))
    done = await asyncio.to_thread(subprocess.run, ["bash", "-ec", script],
                                   capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [json.loads(line) for line in done.stdout.replace("}{", "}\n{").splitlines()]
    assert answers[0]["orders"][0]["order_id"] == "W1001"
    assert [a.get("status") for a in answers[2:]] == [
        "accepted", "picking", "picked", "packed", "ready", "collected"]
    assert [e["type"] for e in event_payloads(api.ledger)][-5:] == [
        "order.accepted", "order.picked", "order.packed", "order.ready", "fulfilment"]
    quoted = re.search(r"`(\{\"code\": \"pick_exceeds_order\".*?\})`", section())
    assert quoted is not None
    assign(api.ledger, "W1002", {"A-100": 2}, attempt=1)
    await post(api, "/v1/orders/W1002/accept")
    for _ in range(2):
        await post(api, "/v1/orders/W1002/pick", {"code": "5901234123457"})
    third = await post(api, "/v1/orders/W1002/pick", {"code": "5901234123457"})
    assert third.json() == json.loads(quoted.group(1))
