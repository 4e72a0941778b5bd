"""The whole agent in process (real readers on simulator ptys speaking the UHF frames, the
router, the ledger, the local API over its Unix socket, MQTT to a real mosquitto): an RFID
count of 2,000 distinct tags over 20 GTINs, each read 5-50 times, with sales by EPC
interleaved; then exit alerts at the door."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from drivers.simulator import Simulator
from drivers.uhf import encode_tag_notice
from edge_agent.config_load import parse_config
from edge_agent.daemon import Agent
from edge_agent.ledger import Ledger
from tests.edge_agent.rfid.conftest import GTINS, SKU_OF, epc_hex, seed_catalog
from tests.helpers.mosquitto import Broker

TAGS_PER_GTIN = 100  # 2,000 distinct tags read
NEVER_READ_SOLD = 40  # sold during the count before any reader saw them
CHUNKS = 400
CHECKPOINTS = range(40, CHUNKS, 40)  # a burst of sales every 10% of the stream
CHUNK_FRAMES_MAX = 150  # < 4 KiB of frames: a pty never refuses the write


async def until(predicate: Any, what: str, limit_s: float = 120.0) -> None:
    try:
        async with asyncio.timeout(limit_s):
            while not await predicate():  # noqa: ASYNC110 - polls state owned by the agent
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def running_agent(home: Path, sim: Simulator, broker: Broker) -> AsyncIterator[
        tuple[Agent, httpx.AsyncClient]]:
    ports = sim.device_ports()
    raw = {
        "store": {"id": "S001", "currency": "EUR"},
        "database": {"path": str(home / "ledger.db")},
        "api": {"socket": str(home / "api.sock")},
        "mqtt": {"url": broker.url},
        "devices": [
            {"kind": "uhf", "name": "floor-1", "port": ports["floor-1"], "role": "inventory",
             "zone": "floor", "dedup_window_s": 5.0},
            {"kind": "uhf", "name": "door-uhf", "port": ports["door-uhf"], "role": "door",
             "zone": "entrance"},
            {"kind": "serial_scanner", "name": "scan-1", "port": ports["scan-1"],
             "suffix": "CR"},
        ],
        "rfid": {"exit_hold_s": 0.2, "exit_grace_min": 10},
        "logging": {"level": "warning"},
    }
    config = parse_config(raw, home / "config.toml")
    ledger = Ledger.open(config.database.path, config.store.id)
    ledger.write_blocking(seed_catalog)
    agent = Agent(config, ledger)
    task = asyncio.create_task(agent.run(), name="test.agent")
    try:
        async def running() -> bool:
            if task.done():
                await task
            return agent.services.state == "running"

        await until(running, "the agent to start", 60)
        transport = httpx.AsyncHTTPTransport(uds=str(config.api.socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=30) as client:
            yield agent, client
    finally:
        agent.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


Plan = tuple[list[list[bytes]], dict[int, list[str]], set[str], dict[str, str]]


def plan(rng: random.Random) -> Plan:
    """Frames per chunk, sales per checkpoint chunk, the EPCs sold, and every item's SKU.

    Of the items sold mid-count, a third is read only before its sale (then leaves), a
    third only after it (still on the counter), a third on both sides; a few more are
    sold without ever being read."""
    chunks: list[list[bytes]] = [[] for _ in range(CHUNKS)]
    sales: dict[int, list[str]] = {c: [] for c in CHECKPOINTS}
    sold: set[str] = set()
    population: dict[str, str] = {}
    serial = 0
    for gtin in GTINS:
        for _ in range(TAGS_PER_GTIN):
            serial += 1
            epc = epc_hex(gtin, serial)
            population[epc] = SKU_OF[gtin]
            reads = rng.randint(5, 50)
            kind = rng.random()
            lo, hi = 0, CHUNKS - 1
            if kind < 0.15:  # sold mid-count: read before, after, or on both sides
                at = rng.choice(CHECKPOINTS)
                sales[at].append(epc)
                sold.add(epc)
                side = rng.randrange(3)
                lo, hi = ((0, at - 1), (at, CHUNKS - 1), (0, CHUNKS - 1))[side]
            frame = encode_tag_notice(bytes.fromhex(epc), rssi=-rng.randint(40, 70))
            for _ in range(reads):
                chunks[rng.randint(lo, hi)].append(frame)
    for _ in range(NEVER_READ_SOLD):
        serial += 1
        gtin = rng.choice(GTINS)
        epc = epc_hex(gtin, serial)
        population[epc] = SKU_OF[gtin]
        sales[rng.choice(CHECKPOINTS)].append(epc)
        sold.add(epc)
    for chunk in chunks:
        rng.shuffle(chunk)
    return chunks, sales, sold, population


async def test_rfid_count_through_the_pty_equals_the_truth(short_dir: Path,
                                                           broker: Broker) -> None:
    rng = random.Random(22)
    chunks, sales, sold, population = plan(rng)
    assert len(population) - NEVER_READ_SOLD == 2000
    truth: dict[str, int] = {}
    for epc, sku in population.items():
        if epc not in sold:
            truth[sku] = truth.get(sku, 0) + 1
    # The projection is off (shrink and unrecorded receipts) before the count.
    received = {sku: n + rng.randint(-6, 6) + sum(1 for e, s in population.items()
                                                     if s == sku and e in sold)
                for sku, n in truth.items()}

    async with Simulator(short_dir / "dev", uhf_round_s=0.5) as sim:
        sim.add_uhf("floor-1")
        sim.add_uhf("door-uhf")
        sim.add_scanner("scan-1", suffix="CR")
        await sim.start()
        async with running_agent(short_dir, sim, broker) as (agent, api):
            statuses = agent.services.device_statuses
            r = await api.post("/v1/receipts", headers={"Idempotency-Key": "rcv-1"}, json={
                "lines": [{"sku": s, "qty": q} for s, q in sorted(received.items())]})
            assert r.status_code == 201, r.text
            # Control barcodes on a scanner open and cancel a count, through the router.
            async def statuses_are(*wanted: str) -> bool:
                counts = (await api.get("/v1/rfid/counts")).json()["counts"]
                return [c["status"] for c in counts] == list(wanted)

            sim.scan("scan-1", "CTL-RFID-COUNT:floor")
            await until(lambda: statuses_are("open"), "a count opened by barcode")
            sim.scan("scan-1", "CTL-RFID-CANCEL")
            await until(lambda: statuses_are("cancelled"), "the barcode count cancelled")
            r = await api.post("/v1/rfid/counts", json={"zones": ["floor"],
                                                        "count_id": "pty-count"})
            assert r.status_code == 201, r.text

            written = 0
            for index, chunk in enumerate(chunks):
                for epc in sales.get(index, []):
                    r = await api.post("/v1/sales", headers={"Idempotency-Key": f"s-{epc}"},
                                       json={"terminal": "T1", "lines": [{"epc": epc}],
                                             "payments": [{"method": "card",
                                                           "amount": "19.90"}]})
                    assert r.status_code == 201, r.text
                for start in range(0, len(chunk), CHUNK_FRAMES_MAX):
                    part = chunk[start:start + CHUNK_FRAMES_MAX]
                    sim.write("floor-1", b"".join(part))
                    written += len(part)

                    async def caught_up(target: int = written) -> bool:
                        return statuses["floor-1"].reads >= target

                    await until(caught_up, f"the reader to parse {written} frames")
            assert sim.device("floor-1").dropped_writes == 0

            async def all_counted() -> bool:
                view = (await api.get("/v1/rfid/counts/pty-count")).json()
                return bool(view["tags"] == 2000)

            await until(all_counted, "2,000 distinct tags in the count")
            r = await api.post("/v1/rfid/counts/pty-count/close")
            assert r.status_code == 200, r.text
            result = r.json()

            counted = {x["sku"]: x["counted"] for x in result["lines"]}
            assert counted == truth  # equals the truth: no item sold mid-count counted
            assert result["tags"] == 2000
            assert result["reads"] >= 2000
            assert result["sold_excluded"] == len(sold) - NEVER_READ_SOLD
            for line in result["lines"]:
                sku = line["sku"]
                sold_here = sum(1 for e in sold if population[e] == sku)
                assert line["expected"] == received[sku] - sold_here
            stock = agent.services.ledger.read_blocking(lambda c: {
                str(x[0]): int(x[1]) for x in c.execute("SELECT sku, on_hand FROM stock")})
            assert {s: stock[s] for s in truth} == truth
            accuracy = (await api.get("/v1/rfid/accuracy")).json()["skus"]
            assert {a["sku"]: a["counted"] for a in accuracy} == truth
            assert all(a["last_counted_at"] == result["counted_at"] for a in accuracy)

            # -- exit alerts: an unsold tag through the door raises one, a sold one none.
            unsold = next(e for e in population if e not in sold)
            gone = next(e for e in population if e in sold)
            topic = "retail/v1/stores/S001/events"
            async with aiomqtt.Client("127.0.0.1", broker.port) as mqtt, \
                    agent.services.hub.subscribe({"alert"}) as stream:
                await mqtt.subscribe(topic, qos=1)
                sim.uhf_tag_present("door-uhf", bytes.fromhex(unsold))
                sim.uhf_tag_present("door-uhf", bytes.fromhex(gone))

                async def judged() -> bool:
                    live = (await api.get("/v1/rfid/accuracy")).json()["live"]
                    return bool(live["exit_alerts"] + live["exit_ignored_sold"] >= 2)

                await until(judged, "both door sightings to be judged")
                _, live_alert = await asyncio.wait_for(stream.get(), 30)
                assert live_alert["epc"] == unsold
                assert live_alert["kind"] == "unsold_tag_exit"

                async def alert_from(messages: Any) -> dict[str, Any]:
                    async for message in messages:
                        batch = json.loads(bytes(message.payload))
                        for event in batch["events"]:
                            if event["type"] == "alert" and \
                                    event["data"]["kind"] == "unsold_tag_exit":
                                return dict(event)
                    raise AssertionError("no alert")

                sent = await asyncio.wait_for(alert_from(mqtt.messages), 60)
                assert sent["data"]["epc"] == unsold
                assert sent["data"]["sku"] == population[unsold]
            # Both tags leave the reader's field; the unsold one passes again later: still
            # the one alert (the reader reports it present anew after its 2 s window).
            sim.uhf_tag_gone("door-uhf", bytes.fromhex(unsold))
            sim.uhf_tag_gone("door-uhf", bytes.fromhex(gone))

            async def quiet(seen: list[int]) -> bool:
                reads = statuses["door-uhf"].reads
                if reads == seen[0]:  # nothing read for 2.5 s: both reported gone
                    return True
                seen[0] = reads
                await asyncio.sleep(2.5)
                return False

            last_reads = [-1]
            await until(lambda: quiet(last_reads), "the door reader to go quiet")
            sim.uhf_tag_present("door-uhf", bytes.fromhex(unsold))

            async def judged_again() -> bool:
                live = (await api.get("/v1/rfid/accuracy")).json()["live"]
                return bool(live["exit_ignored_repeat"] >= 1)

            await until(judged_again, "the tag's second pass to be judged")
            alerts = agent.services.ledger.read_blocking(lambda c: [
                json.loads(bytes(x[0])) for x in c.execute(
                    "SELECT payload FROM events WHERE type = 'alert'")])
            assert [a["data"]["epc"] for a in alerts] == [unsold]
            live = (await api.get("/v1/rfid/accuracy")).json()["live"]
            assert live["exit_ignored_sold"] == 1
            assert live["exit_alerts"] == 1
