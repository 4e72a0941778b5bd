"""The soak agent: the chaos driver (the real ``Agent``, sales through the ledger, fault
hooks) plus a stream of presence reads into the running visitors engine.

Run as ``python -m tests.soak.driver CONFIG`` (``AgentProcess.driver``). Every second it
appends ``P <reads since the last line> <key rotations> <keys destroyed> <busy
checkpoints>`` to ``SOAK_READS_LOG`` (the last three cumulative for this life; a life
starts with an ``L`` line), so the harness can count across SIGKILLs.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from dataclasses import dataclass

from drivers.events import TagEvent
from edge_agent.config_load import load_config
from edge_agent.daemon import Agent
from edge_agent.ledger import Ledger
from edge_agent.logs import configure_logging
from edge_agent.visitors.engine import ENGINE_EXTRA
from tests.chaos.driver import install_hooks, produce

TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class Reader:
    """What the engine needs of a presence device's configuration."""

    name: str = "soak-rfid"
    kind: str = "em4100"
    role: str = "presence"
    zone: str = "entrance"


async def presence(agent: Agent, rate: float, log_path: str, seed: int) -> None:
    reader = Reader()
    engine = None
    while engine is None:
        engine = agent.services.extras.get(ENGINE_EXTRA)
        await asyncio.sleep(0.05)
    rng = random.Random(seed)
    population = [f"{0xA000000000 + i:010X}" for i in range(2000)]
    inside: list[str] = []
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.write(fd, b"L\n")
    loop = asyncio.get_running_loop()
    reads, next_log = 0, loop.time() + 1.0
    try:
        while True:
            if len(inside) < 60 and rng.random() < 0.5:
                inside.append(rng.choice(population))  # a shopper comes in
            if inside and rng.random() < 0.45:
                inside.pop(rng.randrange(len(inside)))  # and leaves
            for _ in range(int(rate * TICK_S)):
                if not inside:
                    break
                engine.handle(reader, TagEvent(device=reader.name, tag_id=rng.choice(inside),
                                               technology="em4100", present=True))
                reads += 1
            if loop.time() >= next_log:
                figures = engine.figures()
                os.write(fd, (f"P {reads} {figures['key_rotations']} "
                              f"{figures['keys_destroyed']} "
                              f"{figures['key_checkpoint_busy']}\n").encode())
                reads, next_log = 0, loop.time() + 1.0
            await asyncio.sleep(TICK_S)
    finally:
        os.close(fd)


def main(config_path: str) -> int:
    config = load_config(config_path)
    configure_logging(config.logging.level, config.logging.format)
    install_hooks(os.environ.get("CHAOS_MODE", "none"),
                  int(os.environ.get("CHAOS_MODE_ARG", "0")))
    ledger = Ledger.open(config.database.path, config.store.id)
    target = int(os.environ.get("CHAOS_TARGET", "0"))
    rate = float(os.environ.get("CHAOS_RATE", "50"))
    seed = int(os.environ.get("CHAOS_SEED", "0"))
    facts_log = os.environ["CHAOS_FACTS_LOG"]
    reads_rate = float(os.environ.get("SOAK_PRESENCE_RATE", "1000"))
    reads_log = os.environ["SOAK_READS_LOG"]

    async def run() -> None:
        agent = Agent(config, ledger)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        agent.add_task("soak.sales", lambda: produce(ledger, target, rate, facts_log, seed))
        agent.add_task("soak.presence",
                       lambda: presence(agent, reads_rate, reads_log, seed + 1))
        await agent.run()

    try:
        asyncio.run(run())
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
