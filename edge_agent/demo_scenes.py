"""The demo's scenes: each feature merged this session shown once and told in plain words
(the two pages, an online order picked and collected, a customer recognised at the till,
an RFID count and an unsold tag at the door, the till refusing expired and recalled
goods). A scene that fails says why and the demo goes on; none can stop the demo.

The demo (``edge_agent/demo.py``) calls :func:`prepare`, :func:`add_devices` and
:data:`CENTRAL_CONFIG` while it sets up, then :func:`play` once central, the agent and the
simulator are up. The scenes of the shop floor (RFID, scanning) are in
``edge_agent/demo_scenes_floor.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from drivers.simulator import Simulator
from edge_agent import demo_scenes_floor as floor
from edge_agent.demo_scenes_floor import Ctx, SceneFailed, say, wait_for

STORE = "DEMO1"
PICKUP_CODE = "4711"
PHONE = "070-123 45 67"  # a Swedish mobile number: the demo store's country is SE

# Appended to the central's configuration: omnichannel brokering every 2 s, and where the
# demo store is (Stockholm).
CENTRAL_CONFIG = (
    "\n[omni]\nrebroker_every = 2\n\n"
    f"[omni.stores.{STORE}]\nlat = 59.33\nlon = 18.06\n"
)


class DemoLike(Protocol):
    state: Path
    central_port: int
    agent_http_port: int
    central_running: bool


def prepare(state: Path) -> Path:
    """The store page's API token (0600), written once; returns its path."""
    path = state / "api-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
    path.chmod(0o600)
    return path


def central_headers(state: Path) -> dict[str, str]:
    """The operator token edge-central generated beside its database at first start."""
    path = state / "admin.token"
    return {"Authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}


def page_port(port: int) -> int:
    """config/demo.toml's store page port, unless another program holds it (then say so)."""
    from edge_agent.demo import free_port, port_open  # noqa: PLC0415 - demo.py imports us

    if not port_open(port):
        return port
    other = free_port()
    say(f"port {port} is taken by another program: the store page uses {other}")
    return other


def add_devices(sim: Simulator) -> None:
    """The scenes' devices: a picking scanner, a second till, two UHF readers."""
    sim.add_scanner("picker", suffix="CR")
    sim.add_scanner("till-2", suffix="CR")
    sim.add_uhf("floor-rfid")
    sim.add_uhf("door-rfid")


async def play(demo: DemoLike, sim: Simulator, agent: httpx.AsyncClient) -> None:
    """Every scene once, in turn; each failure is told, never raised."""
    run = int(time.time()) % 1_000_000  # ids unique to this run: the ledger outlives runs
    await _scene("pages", lambda: pages(demo))
    if not demo.central_running:
        say("scenes: central is not running (offline demo), so the omnichannel, customer, "
            "RFID and recall scenes are skipped")
        return
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{demo.central_port}",
                                 headers=central_headers(demo.state), timeout=10) as central:
        ctx = Ctx(sim=sim, agent=agent, central=central, run=run)
        await _scene("online order", lambda: online_order(ctx))
        await _scene("customer at the till", lambda: customer_at_till(ctx))
        await _scene("RFID count", lambda: floor.rfid_count(ctx))
        await _scene("scanning at the till", lambda: floor.scanning(ctx))
    say("scenes: all told; the shop day goes on")


async def _scene(name: str, scene: Callable[[], Awaitable[None]]) -> None:
    say(f"--- scene: {name} ---")
    try:
        await asyncio.wait_for(scene(), timeout=90)
    except SceneFailed as exc:
        say(f"scene {name!r} stopped: {exc}")
    except TimeoutError:
        say(f"scene {name!r} stopped: it took longer than 90 s")
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
        say(f"scene {name!r} stopped: {type(exc).__name__}: {exc}")


# -- 1. pages -----------------------------------------------------------------------------
async def pages(demo: DemoLike) -> None:
    async def listening() -> bool:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", demo.agent_http_port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    await wait_for(listening, 30, "the store page's port to listen")
    say(f"store page:   http://127.0.0.1:{demo.agent_http_port}/  "
        f"(sign in with the token in {demo.state / 'api-token'})")
    if demo.central_running:
        say(f"central page: http://127.0.0.1:{demo.central_port}/  "
            f"(sign in with the admin token in {demo.state / 'admin.token'})")


# -- 2. omnichannel -----------------------------------------------------------------------
async def online_order(ctx: Ctx) -> None:
    order_id = f"WEB-{ctx.run}"
    tea, coffee = floor.GTIN14["TEA-GREEN"], floor.GTIN14["COFFEE-1KG"]
    body = {"order_id": order_id, "channel": "web", "fulfilment": "pickup",
            "pickup_store": STORE, "lines": [{"sku": "TEA-GREEN", "qty": 2}],
            "pickup_code_hash": hashlib.sha256(PICKUP_CODE.encode()).hexdigest()}
    r = await ctx.central.post("/v1/orders", json=body)
    floor.check(r, f"central refused the order {order_id}")

    async def brokered() -> str | None:
        got = (await ctx.central.get(f"/v1/orders/{order_id}")).json()
        stores = [str(a.get("store")) for a in got.get("assignments") or []]
        return stores[-1] if stores else None

    store = await wait_for(brokered, 30, f"central to broker {order_id}")
    say(f"online order {order_id} (2 x green tea, pickup) brokered to {store}")

    async def incoming() -> dict[str, Any] | None:
        r = await ctx.agent.get(f"/v1/orders/{order_id}")
        return r.json() if r.status_code == 200 else None

    order = await wait_for(incoming, 45, f"the store to receive {order_id}")
    say(f"the store's queue: {order_id} is {order.get('status')}; the picker scans the slip")
    ctx.sim.scan("picker", f"ORD:{order_id}")
    await asyncio.sleep(0.5)
    ctx.sim.scan("picker", coffee)  # not in the order: refused as pick_wrong_item
    await asyncio.sleep(0.5)
    ctx.sim.scan("picker", tea)
    await asyncio.sleep(0.3)
    ctx.sim.scan("picker", tea)
    await asyncio.sleep(0.3)
    ctx.sim.scan("picker", "CTL-CLOSE")

    async def ready() -> dict[str, Any] | None:
        got = (await ctx.agent.get(f"/v1/orders/{order_id}")).json()
        return got if got.get("status") == "ready" else None

    await wait_for(ready, 30, f"{order_id} picked and ready")
    say(f"{order_id} picked (the coffee scanned by mistake was refused) and ready for pickup")
    r = await ctx.agent.post(f"/v1/orders/{order_id}/collect", json={"code": PICKUP_CODE},
                             headers={"Idempotency-Key": f"collect-{order_id}"})
    floor.check(r, f"the store refused to hand over {order_id}")
    say(f"the customer shows code {PICKUP_CODE}: {order_id} {r.json().get('status')}")

    async def central_collected() -> dict[str, Any] | None:
        got = await ctx.central.get(f"/v1/orders/{order_id}")
        data: dict[str, Any] = got.json() if got.status_code == 200 else {}
        return data if data.get("status", data.get("state")) == "collected" else None

    with contextlib.suppress(SceneFailed):
        await wait_for(central_collected, 20, "central to see the hand-over")
    state = (await ctx.central.get(f"/v1/orders/{order_id}")).json()
    atp = (await ctx.central.get("/v1/atp", params={"sku": "TEA-GREEN"})).json()
    say(f"central: order {order_id} is {state.get('status', state.get('state'))}; "
        f"network ATP of green tea: {floor.atp_text(atp)}")


# -- 3. the customer at the till ----------------------------------------------------------
async def customer_at_till(ctx: Ctx) -> None:
    ref = "C-DEMO-NINA"  # one customer across runs: central keeps her between them
    order_ref = f"WEB-N{ctx.run}"
    r = await ctx.central.post("/v1/customers", json={
        "ref": ref, "name": "Nina Berg", "phone": PHONE, "region": "SE",
        "consent": {"recognition": True}, "loyalty": {"tier": "gold", "points": 1200},
        "wishlist": ["COFFEE-1KG"]})
    if r.status_code == 409:  # registered by an earlier run of the demo
        listed = (await ctx.central.get("/v1/customers", params={"limit": 10_000})).json()
        known = [str(c["ref"]) for c in listed.get("customers", [])
                 if c.get("name") == "Nina Berg"]
        ref = ref if ref in known or not known else known[-1]
        say(f"central: customer {ref} is already registered (an earlier demo run)")
    else:
        floor.check(r, "central refused the customer")
        say(f"central: customer {ref} registered (consent to be recognised, gold, "
            "1200 points)")
    r = await ctx.central.post(f"/v1/customers/{ref}/online-orders", json={
        "order_ref": order_ref, "total": "29.80", "currency": "EUR",
        "status": "ready", "lines": [{"sku": "COFFEE-1KG", "qty": 2}]})
    floor.check(r, "central refused the customer's online order")
    say(f"central: an online order {order_ref} of {ref} is waiting for her")

    async def found() -> dict[str, Any] | None:
        got = await ctx.agent.post("/v1/customers/lookup", json={"phone": PHONE})
        data: dict[str, Any] = got.json() if got.status_code == 200 else {}
        orders = data.get("customer", {}).get("open_orders") or [] if data.get("found") \
            else []
        if order_ref in orjson.dumps(orders).decode():
            return data
        return None  # not yet shared, or shared before this online order

    answer = await wait_for(found, 45, "the store to know the customer and the order")
    c = answer.get("customer", {})
    loyalty = c.get("loyalty") or {}
    orders = [o for o in c.get("open_orders") or [] if order_ref in str(o)] or \
        c.get("open_orders") or []
    value = c.get("value") or {}
    index = value.get("index", value) if isinstance(value, dict) else value
    say(f"till: customer found: {c.get('name')}, {loyalty.get('tier')} with "
        f"{loyalty.get('points')} points, wishlist {', '.join(c.get('wishlist') or []) or '-'}, "
        f"open order {', '.join(str(o.get('order_ref', o)) for o in orders) or '-'}, "
        f"value index {index}, context {answer.get('context', {}).get('age_s')} s old")
    r = await ctx.agent.post("/v1/sales", headers={"Idempotency-Key": f"sale-{order_ref}"}, json={
        "terminal": "T2", "customer": ref, "lines": [{"sku": "TEA-GREEN", "qty": 1}],
        "payments": [{"method": "card", "amount": "4.50"}]})
    floor.check(r, "the customer's sale was refused")
    sale_id = r.json().get("sale_id", "")
    say(f"till: {c.get('name')} buys a green tea (sale {sale_id})")

    async def valued() -> dict[str, Any] | None:
        got = await ctx.central.get(f"/v1/customers/{ref}/history")
        history = got.json().get("history", []) if got.status_code == 200 else []
        if not any(h.get("id") == sale_id for h in history):
            return None  # the sale has not reached central yet
        value: dict[str, Any] = (await ctx.central.get(f"/v1/customers/{ref}/value")).json()
        return value

    value_now = await wait_for(valued, 30, "central to record the customer's sale")
    say(f"central: customer {ref} value index {value_now.get('index')} "
        f"(channels {', '.join(value_now.get('channels') or [])}, "
        f"spend {value_now.get('spend')} {value_now.get('currency')})")
