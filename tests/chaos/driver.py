"""The chaos agent: the real ``edge_agent.daemon.Agent`` plus a fact generator and fault hooks.

Run as ``python -m tests.chaos.driver CONFIG`` (by ``tests.helpers.processes.AgentProcess``).
It is the daemon's own ``run_daemon`` path — ledger opened and checked, ``Agent.run()``
with StoreSync — with one extra task that records retail facts (sale, return, receipt,
count) through the ledger at ``CHAOS_RATE`` facts/s until fact number ``CHAOS_TARGET``.
Before asking the ledger to record fact ``n`` it appends ``A n`` to ``CHAOS_FACTS_LOG``;
after the ledger acknowledged it (durable commit), ``K n``. A SIGKILL can strike anywhere
between the two, which is the point.

Self-inflicted SIGKILLs at precise moments (``CHAOS_MODE``, after ``CHAOS_MODE_ARG``
occurrences):

- ``after_commit``: in the ledger's commit listener, i.e. after a commit and before sync
  could publish it;
- ``in_command``: inside the ledger transaction that applies a central command (rolled
  back by SQLite);
- ``after_command``: after a command batch committed and before its ``commands/ack``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent import command_apply as cmds
from edge_agent.config_load import load_config
from edge_agent.daemon import Agent
from edge_agent.ledger import Ledger, Tx
from edge_agent.logs import configure_logging
from edge_agent.sync_adapter import LedgerStorePort
from sync.store_port import BatchOutcome

SKUS = [f"SKU-{i:03d}" for i in range(24)]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Countdown:
    def __init__(self, n: int) -> None:
        self.n = n

    def hit(self) -> None:
        self.n -= 1
        if self.n <= 0:
            _die()


def fact_op(n: int) -> Any:
    """The ledger op recording fact ``n`` (deterministic in ``n``)."""
    rng = random.Random(n)
    sku = rng.choice(SKUS)
    qty = rng.randint(1, 5)
    kind = rng.choices(["sale", "return", "receipt", "count"], [6, 1, 2, 1])[0]

    def op(tx: Tx) -> None:
        if kind == "sale":
            tx.append("sale", {
                "chaos_fact": n, "sale_id": f"sale-{n}", "terminal": "T1",
                "lines": [{"sku": sku, "qty": qty, "unit_price": "1.50",
                           "line_total": f"{qty * 1.5:.2f}"}],
                "total": f"{qty * 1.5:.2f}", "currency": "EUR",
                "payments": [{"method": "cash", "amount": f"{qty * 1.5:.2f}"}]},
                stock=[(sku, -qty)])
        elif kind == "return":
            tx.append("return", {
                "chaos_fact": n, "return_id": f"ret-{n}", "restock": True,
                "lines": [{"sku": sku, "qty": qty, "restock": True}],
                "refund_total": f"{qty * 1.5:.2f}"}, stock=[(sku, qty)])
        elif kind == "receipt":
            tx.append("receipt", {"chaos_fact": n, "ref": f"DN-{n}",
                                  "lines": [{"sku": sku, "qty": qty}]}, stock=[(sku, qty)])
        else:
            expected = tx.on_hand(sku)
            counted = max(0, expected + rng.randint(-2, 2))
            tx.append("count", {"chaos_fact": n, "count_id": f"cnt-{n}", "lines": [
                {"sku": sku, "counted": counted, "expected": expected}]},
                stock=[(sku, counted - expected)] if counted != expected else [])

    return op


def api_request(n: int) -> tuple[str, dict[str, Any]]:
    """The API call recording fact ``n`` (deterministic in ``n``); its id is ``chaos-n``."""
    rng = random.Random(n)
    sku = rng.choice(SKUS)
    qty = rng.randint(1, 5)
    kind = rng.choices(["sale", "return", "receipt", "count"], [6, 1, 2, 1])[0]
    fid = f"chaos-{n}"
    if kind == "sale":
        total = f"{qty * 1.5:.2f}"
        return "/v1/sales", {"terminal": "T1", "sale_id": fid, "lines": [
            {"sku": sku, "qty": qty, "unit_price": "1.50"}],
            "payments": [{"method": "cash", "amount": total}]}
    if kind == "return":
        return "/v1/returns", {"return_id": fid, "restock": True, "lines": [
            {"sku": sku, "qty": qty, "unit_price": "1.50"}]}
    if kind == "receipt":
        return "/v1/receipts", {"ref": fid, "lines": [{"sku": sku, "qty": qty}]}
    return "/v1/counts", {"count_id": fid, "lines": [{"sku": sku, "counted": rng.randint(0, 9)}]}


def read_log(path: str) -> tuple[set[int], set[int], set[int]]:
    """(attempted, acknowledged, refused) fact numbers."""
    out: dict[str, set[int]] = {"A": set(), "K": set(), "R": set()}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                kind, _, number = line.strip().partition(" ")
                if kind in out and number.isdigit():
                    out[kind].add(int(number))
    except FileNotFoundError:
        pass
    return out["A"], out["K"], out["R"]


async def produce_api(socket: str, target: int, rate: float, log_path: str, seed: int) -> None:
    """Facts through the agent's own local API, as a POS would, with idempotency keys.

    After a restart, every fact attempted but not acknowledged is retried first with the
    same key and body (a POS retrying after a timeout): it must be recorded once."""
    import httpx  # noqa: PLC0415 - only this mode needs it

    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    attempted, acked, refused = read_log(log_path)
    transport = httpx.AsyncHTTPTransport(uds=socket)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                 timeout=30) as client:
        while True:
            try:
                if (await client.get("/v1/status")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)

        async def one(number: int) -> None:
            os.write(fd, f"A {number}\n".encode())
            path, body = api_request(number)
            while True:
                try:
                    r = await client.post(path, json=body,
                                          headers={"Idempotency-Key": f"chaos-{number}"})
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code >= 500 or r.status_code == 429:
                    await asyncio.sleep(0.1)
                    continue
                break
            os.write(fd, f"{'K' if r.status_code < 300 else 'R'} {number}\n".encode())

        retry = sorted(attempted - acked - refused)
        n = max(attempted, default=0)
        try:
            async with asyncio.TaskGroup() as tg:
                for number in retry:
                    tg.create_task(one(number), name=f"chaos.retry[{number}]")
            while n < target:
                burst = min(target - n, rng.randint(1, 10))
                numbers = range(n + 1, n + 1 + burst)
                n += burst
                async with asyncio.TaskGroup() as tg:
                    for number in numbers:
                        tg.create_task(one(number), name=f"chaos.api[{number}]")
                await asyncio.sleep(burst / rate * rng.uniform(0.5, 1.5))
        finally:
            os.close(fd)
    await asyncio.Event().wait()


def last_attempted(path: str) -> int:
    top = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                kind, _, number = line.strip().partition(" ")
                if kind == "A" and number.isdigit():
                    top = max(top, int(number))
    except FileNotFoundError:
        pass
    return top


async def produce(ledger: Ledger, target: int, rate: float, log_path: str, seed: int) -> None:
    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = last_attempted(log_path)

    async def one(number: int) -> None:
        os.write(fd, f"A {number}\n".encode())
        await ledger.write(fact_op(number))
        os.write(fd, f"K {number}\n".encode())

    try:
        while n < target:
            burst = min(target - n, rng.randint(1, 10))
            numbers = range(n + 1, n + 1 + burst)
            n += burst
            async with asyncio.TaskGroup() as tg:
                for number in numbers:
                    tg.create_task(one(number), name=f"chaos.fact[{number}]")
            await asyncio.sleep(burst / rate * rng.uniform(0.5, 1.5))
    finally:
        os.close(fd)
    await asyncio.Event().wait()  # keep running; the harness stops us


def install_hooks(mode: str, arg: int) -> None:
    if mode == "in_command":
        countdown = Countdown(arg)
        real_apply = cmds.apply_command

        def apply_then_die(tx: Tx, command: Mapping[str, Any]) -> Any:
            result = real_apply(tx, command)
            countdown.hit()  # inside the transaction, before its commit
            return result

        cmds.apply_command = apply_then_die  # fault hook
    elif mode == "after_command":
        countdown_after = Countdown(arg)
        real_batch = LedgerStorePort.apply_command_batch

        async def batch_then_die(self: LedgerStorePort,
                                 commands: Sequence[Mapping[str, Any]]) -> BatchOutcome:
            outcome = await real_batch(self, commands)
            if outcome.outcomes:
                countdown_after.hit()  # committed; commands/ack not yet published
            return outcome

        LedgerStorePort.apply_command_batch = batch_then_die  # type: ignore[method-assign] # fault hook


def main(config_path: str) -> int:
    config = load_config(config_path)
    configure_logging(config.logging.level, config.logging.format)
    mode = os.environ.get("CHAOS_MODE", "none")
    arg = int(os.environ.get("CHAOS_MODE_ARG", "0"))
    install_hooks(mode, arg)
    ledger = Ledger.open(config.database.path, config.store.id)
    target = int(os.environ.get("CHAOS_TARGET", "0"))
    rate = float(os.environ.get("CHAOS_RATE", "50"))
    seed = int(os.environ.get("CHAOS_SEED", "0"))
    log_path = os.environ["CHAOS_FACTS_LOG"]

    async def run() -> None:
        agent = Agent(config, ledger)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        if mode == "after_commit":
            countdown = Countdown(arg)
            ledger.add_commit_listener(countdown.hit)
        if os.environ.get("CHAOS_VIA") == "api":
            socket = str(config.api.socket)
            agent.add_task(
                "chaos.facts", lambda: produce_api(socket, target, rate, log_path, seed))
        else:
            agent.add_task(
                "chaos.facts", lambda: produce(ledger, target, rate, log_path, seed))
        await agent.run()

    try:
        asyncio.run(run())
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
