"""The demo's shop-floor scenes: an RFID count with a sale during it and an unsold tag
leaving through the door reader, and the till refusing expired and recalled goods; with
the small helpers every scene shares (waiting on a condition, checking an answer)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson

from drivers.epc import encode_sgtin96
from drivers.simulator import Simulator
from edge_agent.demo_seed import GTIN_OF

T = TypeVar("T")
STORE = "DEMO1"
GTIN14 = {sku: gtin.zfill(14) for sku, gtin in GTIN_OF.items()}


class SceneFailed(Exception):
    """A scene cannot go on; its message says why, in plain words."""


@dataclass
class Ctx:
    sim: Simulator
    agent: httpx.AsyncClient
    central: httpx.AsyncClient
    run: int
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {line}", flush=True)


async def wait_for(probe: Callable[[], Awaitable[T | None]], within_s: float,
                   what: str) -> T:
    """Poll ``probe`` until it gives something, or fail saying what did not happen."""
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            got = await probe()
            if got:
                return got
        if time.monotonic() > deadline:
            raise SceneFailed(f"gave up waiting for {what} after {within_s:.0f} s")
        await asyncio.sleep(0.3)


def check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = f"{body.get('code')}: {body.get('message', body.get('detail'))}"
        except ValueError:
            detail = response.text[:200]
        raise SceneFailed(f"{what} ({response.status_code} {detail})")


def atp_text(answer: dict[str, Any]) -> str:
    """Central's ``/v1/atp`` answer, in a few words."""
    skus = answer.get("skus")
    items = skus.values() if isinstance(skus, dict) else (skus or [])
    parts = [str(item.get("atp", item.get("network", item)))
             for item in items if isinstance(item, dict)]
    return ", ".join(parts) or orjson.dumps(answer).decode()[:200]


class Watch:
    """The agent's event stream (a few topics), recorded while a scene runs."""

    def __init__(self, agent: httpx.AsyncClient, topics: str) -> None:
        self.agent = agent
        self.topics = topics
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the agent went away: nothing more to see
            await self._follow()

    async def _follow(self) -> None:
        async with self.agent.stream("GET", "/v1/events/stream", params={"topics": self.topics},
                                     timeout=None) as stream:
            self.ready.set()
            topic = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    topic = line[7:].strip()
                elif line.startswith("data: "):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        data = orjson.loads(line[6:])
                        if isinstance(data, dict):
                            self.events.append((topic, data))

    def reasons(self, device: str) -> list[str]:
        return [str(d.get("reason")) for t, d in self.events
                if t == "scan_rejected" and d.get("device") == device]


# -- 4. RFID inventory --------------------------------------------------------------------
async def rfid_count(ctx: Ctx) -> None:
    sku = "COFFEE-1KG"
    gtin = GTIN14[sku]
    base = ctx.run * 10  # serials unique to this run
    tags = [encode_sgtin96(gtin, base + n, 7) for n in range(1, 4)]
    count_id = f"demo-count-{ctx.run}"
    r = await ctx.agent.post("/v1/rfid/counts", json={"zones": ["floor"],
                                                      "count_id": count_id})
    check(r, "the store refused to open a count")
    say(f"RFID: count {count_id} opened on the floor; the reader sees 3 bags of coffee")
    for epc in tags:
        ctx.sim.uhf_tag_present("floor-rfid", epc)

    async def all_read() -> bool:
        got = (await ctx.agent.get(f"/v1/rfid/counts/{count_id}")).json()
        return int(got.get("tags", 0)) >= len(tags)

    await wait_for(all_read, 30, "the floor reader to read the 3 tags")
    sold = tags[2]
    r = await ctx.agent.post("/v1/sales", headers={"Idempotency-Key": f"rfid-{ctx.run}"},
                             json={"terminal": "T2", "lines": [{"epc": sold.hex().upper()}],
                                   "payments": [{"method": "card", "amount": "14.90"}]})
    check(r, "the sale by EPC was refused")
    say(f"RFID: during the count one tagged bag is sold at the till (EPC {sold.hex().upper()})")
    for epc in tags:
        ctx.sim.uhf_tag_gone("floor-rfid", epc)
    r = await ctx.agent.post(f"/v1/rfid/counts/{count_id}/close")
    check(r, "the count did not close")
    lines = r.json().get("lines", [])
    for line in lines:
        say(f"RFID: count {count_id} closed: {line.get('sku')} counted {line.get('counted')}, "
            f"expected {line.get('expected')}, variance {line.get('variance')} "
            "(the sold bag is not counted; the variance corrects the stock)")
    if not lines:
        say(f"RFID: count {count_id} closed with no lines")
    await _door(ctx, unsold=tags[0], sold=sold)


async def _door(ctx: Ctx, *, unsold: bytes, sold: bytes) -> None:
    say("RFID: an unsold bag and the sold one go out through the door reader")
    for epc in (unsold, sold):
        ctx.sim.uhf_tag_present("door-rfid", epc)
    wanted = {unsold.hex().upper(): "unsold", sold.hex().upper(): "sold"}

    async def alerts() -> list[dict[str, Any]] | None:
        got = (await ctx.central.get("/v1/alerts", params={
            "store": STORE, "kind": "unsold_tag_exit", "limit": 1000})).json()
        mine = [a for a in got.get("alerts", [])
                if str((a.get("detail") or {}).get("epc", "")).upper() in wanted]
        return mine or None

    try:
        await wait_for(alerts, 30, "central to receive the door alert")
        await asyncio.sleep(3)  # time for a (wrong) second alert to arrive too
        found = await alerts() or []
    finally:
        for epc in (unsold, sold):
            ctx.sim.uhf_tag_gone("door-rfid", epc)
    kinds = []
    for alert in found:
        detail = alert.get("detail") or {}
        which = wanted[str(detail.get("epc", "")).upper()]
        kinds.append(which)
        say(f"alert: unsold_tag_exit at {detail.get('door', 'the door')}: the {which} bag "
            f"{detail.get('epc')} left without a sale")
    if kinds == ["unsold"]:
        say("RFID: exactly 1 exit alert, for the unsold bag; the sold bag left quietly")
    else:
        say(f"RFID: {len(kinds)} exit alert(s) ({', '.join(kinds)}): expected one, for the "
            "unsold bag only")


# -- 5. scanning at the till --------------------------------------------------------------
async def scanning(ctx: Ctx) -> None:
    sku = "TEA-GREEN"
    gtin = GTIN14[sku]
    bad_lot = f"BAD{ctx.run}"
    recall_id = f"R-DEMO-{ctx.run}"
    r = await ctx.central.post("/v1/recalls", json={"gtin": gtin, "lot": bad_lot,
                                                    "recall_id": recall_id,
                                                    "reason": "demo: a bad batch"})
    check(r, "central refused the recall")
    say(f"central: recall {recall_id} of green tea lot {bad_lot} sent to the stores")

    async def held() -> bool:
        got = (await ctx.agent.get("/v1/recalls")).json()
        return recall_id in orjson.dumps(got).decode()

    await wait_for(held, 45, "the store to hold the recall")
    watch = Watch(ctx.agent, "scan_rejected,till_refused,basket")
    task = asyncio.create_task(watch.run(), name="demo.scenes.watch")
    try:
        await asyncio.wait_for(watch.ready.wait(), 10)
        today = dt.datetime.now(dt.UTC).date()
        future = (today + dt.timedelta(days=60)).strftime("%y%m%d")
        past = (today - dt.timedelta(days=3)).strftime("%y%m%d")
        gs = "\x1d"
        say(f"till-2: a GS1 DataMatrix of green tea, best until {future} (lot OK1)")
        ctx.sim.scan("till-2", f"01{gtin}17{future}10OK1{gs}", aim="]d2")
        await asyncio.sleep(0.5)
        say(f"till-2: another, expired on {past}")
        ctx.sim.scan("till-2", f"01{gtin}17{past}10OK2{gs}", aim="]d2")
        await asyncio.sleep(0.5)
        say(f"till-2: a QR code with a GS1 Digital Link of the recalled lot {bad_lot}")
        ctx.sim.scan("till-2", f"https://id.gs1.org/01/{gtin}/10/{bad_lot}", aim="]Q3")
        await asyncio.sleep(0.5)
        ctx.sim.scan("till-2", "CTL-CHECKOUT")

        async def refused() -> list[str] | None:
            got = watch.reasons("till-2")
            return got if {"expired", "recalled"} <= set(got) else None

        reasons = await wait_for(refused, 20, "the till's refusals")
        for reason in reasons:
            say(f"till-2 refused a scan: {reason}")

        async def sold() -> dict[str, Any] | None:
            return next((d for t, d in watch.events if t == "basket"
                         and "T2" in (d.get("terminal"), d.get("device"))
                         and d.get("action") == "checkout"),
                        None)

        sale = await wait_for(sold, 20, "the good tea's sale")
        say(f"till-2: the good tea is sold (total {sale.get('total')}); the expired and the "
            "recalled packs stay off the receipt")
    finally:
        task.cancel()
        await asyncio.wait([task])  # its end (cancelled or failed) is not this scene's

    async def found_at() -> list[dict[str, Any]] | None:
        got = (await ctx.central.get("/v1/recalls")).json()
        for recall in got.get("recalls", []):
            if recall.get("recall_id") == recall_id and recall.get("found_at"):
                return list(recall["found_at"])
        return None

    where = await wait_for(found_at, 30, "central to learn where the recalled lot is")
    say("central: recall " + recall_id + " found at " + ", ".join(
        f"{f.get('store')} ({f.get('attempts')} attempt(s))" for f in where))
