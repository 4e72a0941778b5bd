"""The demo's shop day: shoppers walking in and buying, the back room receiving what runs
low and central replenishing it, and the plain-words narration of what the store and
central do (the store's live events, the MQTT traffic, a status line every 10 s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from typing import TYPE_CHECKING, Any

import aiomqtt
import httpx

from drivers.simulator import Simulator
from edge_agent import demo_scenes, demo_story
from edge_agent.demo_scenes_floor import say
from edge_agent.demo_seed import DELIVERY, GTIN_OF, LOW_STOCK, SCANNABLE, STORE, TAGS

if TYPE_CHECKING:
    from edge_agent.demo import Demo


async def shop(sim: Simulator) -> None:
    rng = random.Random(42)  # noqa: S311 - a demo, not security
    tick = 0
    while True:
        tick += 1
        sim.door("door-main", "in")
        tag = TAGS[tick % len(TAGS)]
        sim.tag_present("entrance-rfid", tag)
        for _ in range(rng.randint(1, 3)):
            sim.scan("till-1", rng.choice(SCANNABLE))
            await asyncio.sleep(0.3)
        sim.scan("till-1", "CTL-CHECKOUT")
        if tick % 7 == 0:
            sim.corrupt("till-1")  # a garbled frame: counted, never a crash
        await asyncio.sleep(2.0)
        sim.door("door-main", "out")
        sim.tag_gone("entrance-rfid", tag)


async def replenish(demo: Demo, sim: Simulator, agent: httpx.AsyncClient) -> None:
    """Like a store: the back room receives a delivery of what runs low, and, when
    central is there, central sends a replenishment from the warehouse now and then."""
    last_central = time.monotonic()
    while True:
        await asyncio.sleep(3)
        try:
            low = (await agent.get("/v1/stock/low", params={"threshold": LOW_STOCK})).json()
        except (httpx.HTTPError, ValueError):
            continue
        items = [i for i in low.get("items", []) if i.get("sku") in GTIN_OF]
        if demo.central_running and items and time.monotonic() - last_central > 20:
            last_central = time.monotonic()
            sku = items.pop(0)["sku"]
            say(f"central ops: replenishment of {DELIVERY} x {demo_story.NAMES[sku]} "
                "from the warehouse")
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{demo.central_port}",
                        headers=demo_scenes.central_headers(demo.state)) as central:
                    await central.post(f"/v1/stores/{STORE}/adjust", json={
                        "reason": "replenishment", "ref": f"DEMO-WH-{int(time.time())}",
                        "lines": [{"sku": sku, "delta": DELIVERY}]})
        for item in items[:1]:
            sim.scan("backroom", f"CTL-QTY-{DELIVERY}")
            await asyncio.sleep(0.2)
            sim.scan("backroom", GTIN_OF[item["sku"]])
            await asyncio.sleep(0.2)
            sim.scan("backroom", "CTL-CLOSE")
            await asyncio.sleep(2)  # the delivery is recorded before stock is read again


async def narrate_store(agent: httpx.AsyncClient) -> None:
    topics = "basket,session,scan_rejected,rejected,door,device,customer_arrived"
    while True:
        with contextlib.suppress(httpx.HTTPError):
            async with agent.stream("GET", "/v1/events/stream",
                                    params={"topics": topics}, timeout=None) as stream:
                topic = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        topic = line[7:]
                    elif line.startswith("data: "):
                        with contextlib.suppress(ValueError):
                            text = demo_story.store_event(topic, json.loads(line[6:]))
                            if text:
                                say(text)
        await asyncio.sleep(1)


async def narrate_sync(demo: Demo, listening: asyncio.Event) -> None:
    if not demo.broker_running:
        listening.set()
        return
    while True:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", demo.mqtt_port,
                                      identifier=f"demo-narrator-{os.getpid()}") as client:
                await client.subscribe(f"retail/v1/stores/{STORE}/#")
                listening.set()
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes):
                        text = demo_story.mqtt_message(str(message.topic), payload)
                        if text:
                            for line in text.splitlines():
                                say(line)
        await asyncio.sleep(1)


async def report(agent: httpx.AsyncClient) -> None:
    while True:
        await asyncio.sleep(10)
        say(await agent_line(agent))


async def agent_line(agent: httpx.AsyncClient) -> str:
    try:
        status: dict[str, Any] = (await agent.get("/v1/status")).json()
        stock = (await agent.get("/v1/stock")).json()
    except (httpx.HTTPError, ValueError):
        return "agent: starting…"
    outbox = status.get("outbox", {})
    broker = status.get("broker", {})
    devices = status.get("devices", {})
    link = ("online" if broker.get("connected") else
            "OFFLINE: facts are queued in the ledger and sent when the broker is back")
    shown = ", ".join(f"{i.get('sku')}={i.get('on_hand')}" for i in stock.get("items", [])
                      if isinstance(i, dict))
    return (f"store: seq {status.get('last_seq')} pending {outbox.get('pending')} {link}; "
            f"cseq {status.get('applied_cseq')}; devices "
            f"{devices.get('connected')}/{devices.get('total')}; stock: {shown or '—'}")
