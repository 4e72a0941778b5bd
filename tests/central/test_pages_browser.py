"""The central's operations page in a real browser (the system's headless Chromium, driven
by Playwright) over a real mosquitto and an in-process central: login with the operator
token (a wrong one refused), a store that dies turning offline on the grid (its will,
published by the broker when its connection drops), the drill-down, acknowledging an
alert, the boards that are not there yet, and the self-hosted Swagger UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.session import SESSION
from tests.central.conftest import ADMIN_TOKEN, Central, FakeStore, event, wait_until
from tests.helpers.browser import browser_context, require_chromium, screenshot
from tests.helpers.faultproxy import FaultProxy
from tests.helpers.mosquitto import Broker

pytestmark = pytest.mark.slow
WAIT_MS = 30_000  # generous: the machine is shared; tests follow progress, not the clock
KEEPALIVE_S = 2  # the dying store's MQTT keepalive: its death timeout is 1.5 x this

# A store's MQTT session as the agent opens it: a retained offline will, then a retained
# birth. Killed with SIGKILL, it never says goodbye; the broker publishes the will.
STORE_SCRIPT = """
import sys, time, uuid, orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, store, keepalive = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
topic = f"retail/v1/stores/{store}/status"
epoch, boot = str(uuid.uuid4()), str(uuid.uuid4())
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dying-{store}", protocol=mqtt.MQTTv5)
c.will_set(topic, orjson.dumps({"v": 1, "store": store, "state": "offline", "epoch": epoch,
                                "boot_id": boot}), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=keepalive, clean_start=True)
c.loop_start()
c.publish(topic, orjson.dumps({"v": 1, "store": store, "state": "online", "epoch": epoch,
          "boot_id": boot, "last_seq": 0, "applied_cseq": 0, "agent": "dying/1",
          "ts": "2026-11-25T09:00:00.000Z"}), qos=1, retain=True).wait_for_publish(20)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def ops(broker: Broker, tmp_path: Path) -> Iterator[Central]:
    require_chromium()
    central = Central(broker, f"sqlite:///{tmp_path}/central.db", tmp_path)
    try:
        yield central
    finally:
        central.stop()


@pytest.fixture
def store(broker: Broker, ops: Central) -> Iterator[FakeStore]:
    fake = FakeStore(broker.port, "S001")
    try:
        yield fake
    finally:
        fake.close()


async def _login(page: Any, url: str, token: str) -> None:
    await page.goto(url + "/")
    await page.wait_for_url("**/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")


async def test_login_with_the_operator_token_and_a_wrong_one_refused(ops: Central) -> None:
    async with httpx.AsyncClient(base_url=ops.url) as client:
        assert (await client.get("/v1/grid")).status_code == 401
        assert (await client.get("/", follow_redirects=False)).headers["location"] == "/login"
        wrong = await client.post("/login", data={"token": "nope"})
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        assert (await client.post("/v1/alerts/1/ack")).status_code == 401
    async with browser_context() as (context, watched):
        page = await context.new_page()
        await _login(page, ops.url, "not-the-token")
        await page.wait_for_selector("text=Wrong token", timeout=WAIT_MS)
        assert await context.cookies() == []
        # the refused form answers 401, which Chromium reports on the console; nothing else
        assert all("401" in e for e in watched.console_errors), watched
        watched.console_errors.clear()
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#mqtt.on", timeout=WAIT_MS)
        [cookie] = await context.cookies()
        assert cookie["name"] == SESSION.name
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["value"] != ADMIN_TOKEN
        # the cookie opens the operator API too (same origin), e.g. the existing status
        status = await page.evaluate("fetch('/v1/status').then(r => r.status)")
        assert status == 200
        # the omnichannel routes are served: the board is live (empty) and the lookup open
        await page.wait_for_function(
            "document.querySelector('#orders').textContent.includes('no orders')")
        assert "not available" not in (await page.text_content("#atp") or "")
        assert watched.clean(), watched


@pytest.fixture
def link(broker: Broker) -> Iterator[FaultProxy]:
    """The store's route to the broker, which a test can cut (blackhole)."""
    with FaultProxy(broker.port) as proxy:
        yield proxy


@pytest.fixture
def dying_store(link: FaultProxy) -> Iterator[subprocess.Popen[bytes]]:
    """Store S009's MQTT session in its own process, started and ready (birth sent)."""
    proc = subprocess.Popen([sys.executable, "-c", STORE_SCRIPT, str(link.port), "S009",
                             str(KEEPALIVE_S)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("death", ["sigkill", "route_lost"])
async def test_a_store_taken_offline_turns_offline_on_the_grid(
        ops: Central, link: FaultProxy, dying_store: subprocess.Popen[bytes],
        death: str) -> None:
    """SIGKILL: the kernel closes the socket and the broker sends the will at once. A lost
    route (every byte dropped, no FIN): only the broker's keepalive timer notices, after
    1.5 x the store's keepalive, the death timeout; then the will."""
    async with browser_context() as (context, watched):
        page = await context.new_page()
        await _login(page, ops.url, ADMIN_TOKEN)
        row = 'tr[data-store="S009"]'
        await page.wait_for_selector(f'{row}[data-state="online"]', timeout=WAIT_MS)
        if death == "sigkill":
            os.kill(dying_store.pid, signal.SIGKILL)
        else:
            link.blackhole(120)
        cut = time.monotonic()
        await page.wait_for_selector(f'{row}[data-state="offline"]', timeout=WAIT_MS)
        print(f"{death}: offline on the page {time.monotonic() - cut:.2f} s after the cut "
              f"(death timeout {1.5 * KEEPALIVE_S:.1f} s, page polls every 2 s)")
        assert await page.text_content(f"{row} td.state") == "offline"
        if death == "route_lost":
            assert dying_store.poll() is None  # the store itself never stopped
        assert watched.clean(), watched


async def test_drill_down_and_an_acknowledged_alert_disappears(ops: Central,
                                                                store: FakeStore) -> None:
    store.birth()
    store.send([event(1, "A-1", -2), event(2, "B-2", 5, kind="receipt")])
    store.wait_ack(2)
    store.birth(last_seq=0)  # a live birth behind central: history_rolled_back (critical)
    ops.post("/v1/stores/S001/adjust", {"lines": [{"sku": "A-1", "delta": 10}]})
    [alert] = wait_until(lambda: ops.get("/v1/alerts/open")["alerts"], what="the alert")
    assert alert["kind"] == "history_rolled_back"
    async with browser_context() as (context, watched):
        page = await context.new_page()
        await _login(page, ops.url, ADMIN_TOKEN)
        row = f'#alerts tr[data-alert-id="{alert["id"]}"]'
        await page.wait_for_selector(row, timeout=WAIT_MS)
        await page.wait_for_function(
            "document.querySelector('tr[data-store=\"S001\"] td.alerts')?.textContent === '1'",
            timeout=WAIT_MS)
        await page.click('tr[data-store="S001"]')
        await page.wait_for_selector("#drill-stock tbody tr td:text-is('A-1')", timeout=WAIT_MS)
        stock = await page.locator("#drill-stock tbody tr").all_text_contents()
        assert any(r.startswith("A-1") and "8" in r for r in stock), stock  # -2 + 10
        await page.wait_for_selector("#drill-commands tbody tr td:text-is('stock.adjust')",
                                     timeout=WAIT_MS)
        await screenshot(page, "central-ops")
        await page.click(f"{row} button.ack")
        await page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
        await page.wait_for_function(
            "document.querySelector('tr[data-store=\"S001\"] td.alerts')?.textContent === '0'",
            timeout=WAIT_MS)
        await page.reload()
        await page.wait_for_selector("#alerts tbody td.empty", timeout=WAIT_MS)
        assert await page.locator(row).count() == 0
        assert watched.clean(), watched
    assert ops.get("/v1/alerts/open")["alerts"] == []
    assert [a["id"] for a in ops.alerts()] == [alert["id"]]  # still in the full list
    again = ops.post(f"/v1/alerts/{alert['id']}/ack")
    assert again == {"id": alert["id"], "acked": True, "already": True}
    ops.post("/v1/alerts/999999/ack", expect=404)


async def test_docs_are_self_hosted(ops: Central) -> None:
    async with browser_context() as (context, watched):
        page = await context.new_page()
        await _login(page, ops.url, ADMIN_TOKEN)
        await page.wait_for_selector("#mqtt.on", timeout=WAIT_MS)
        await page.goto(ops.url + "/docs")
        await page.wait_for_selector(".opblock-summary-path[data-path='/v1/alerts/{alert_id}/ack']",
                                     timeout=WAIT_MS)
        assert watched.blocked == []
        assert watched.page_errors == []
