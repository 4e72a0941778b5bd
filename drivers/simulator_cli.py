"""The simulator's command line: simulated devices on ptys, their TOML, and demo traffic.

``python -m drivers.simulator`` and ``edge-agent simulate`` run :func:`main`: it starts
:func:`default_simulator`, writes or prints the ``[[devices]]`` TOML (or JSON) and keeps
the ptys alive, driving them with the demo script unless ``--no-demo``, until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import Sequence
from pathlib import Path

from drivers.simulator import DEMO_CODES, Simulator

__all__ = ["default_simulator", "main"]


def default_simulator(directory: str | os.PathLike[str]) -> Simulator:
    sim = Simulator(directory)
    sim.add_scanner("till-1")
    sim.add_em4100("rfid-1")
    sim.add_uhf("uhf-1")
    sim.add_door("door-1")
    sim.add_beacons("ble-1", ibeacon_uuids=[uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")])
    return sim


async def _amain(args: argparse.Namespace) -> None:
    sim = default_simulator(args.dir)
    await sim.start()
    text = sim.config_toml()
    if args.config_out:
        await asyncio.to_thread(Path(args.config_out).write_text, text, encoding="utf-8")
    if args.json:
        print(json.dumps({"dir": str(args.dir), "config_out": args.config_out,  # noqa: T201 -- CLI output
                          "devices": sim.config_entries()}, default=str), flush=True)
    elif not args.config_out:
        print(text, flush=True)  # noqa: T201 -- CLI output
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = None
    if not args.no_demo:
        demo = asyncio.create_task(
            sim.run_demo_script(args.codes or DEMO_CODES, interval=args.interval),
            name="simulator.demo",
        )
    try:
        await stop.wait()
    finally:
        if demo is not None:
            demo.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await demo
        await sim.aclose()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Simulate store devices on pseudo-terminals.")
    parser.add_argument("--dir", default="/tmp/edge-agent-sim", help="directory for the symlinks")  # noqa: S108
    parser.add_argument("--config-out", help="write the [[devices]] TOML snippet here")
    parser.add_argument("--codes", nargs="*", help="catalog codes to scan in the demo")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between demo rounds")
    parser.add_argument("--no-demo", action="store_true", help="only keep the ptys alive")
    parser.add_argument("--json", action="store_true",
                        help="print the devices as one JSON object instead of TOML")
    asyncio.run(_amain(parser.parse_args(argv)))

