"""Child process for the durability test: records facts as fast as it can and prints
``seq event_id sku delta n`` for each one once ``ledger.write`` has answered (= durable)."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from edge_agent.ledger import AppendedEvent, Ledger, Tx


async def main(path: Path, writers: int) -> None:
    ledger = Ledger.open(path, "S1")
    out = sys.stdout

    async def writer(rng: random.Random) -> None:
        while True:
            sku = f"SKU-{rng.randrange(8)}"
            delta = rng.randrange(-5, 6)
            n = rng.randrange(1_000_000)

            def op(tx: Tx, sku: str = sku, delta: int = delta, n: int = n) -> AppendedEvent:
                return tx.append("adjustment", {"reason": "correction", "n": n},
                                 stock=[(sku, delta)])

            appended = await ledger.write(op)
            out.write(f"{appended.seq} {appended.id} {sku} {delta} {n}\n")
            out.flush()

    print("ready", flush=True)
    async with asyncio.TaskGroup() as tg:
        for i in range(writers):
            tg.create_task(writer(random.Random()), name=f"writer-{i}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
