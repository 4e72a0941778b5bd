"""The omnichannel loop in the real ``edge-central serve`` process (real mosquitto, stores
simulated over MQTT): an order taken with the CLI is brokered, rejected and re-brokered;
a SIGKILL and restart keep the order, its history, the rejection hold and the idempotency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from central.cli import main
from tests.central.conftest import FakeStore, wait_until
from tests.central.test_orders import receipt, store_event
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import ADMIN_TOKEN, CentralProcess

OMNI = """
[omni]
rebroker_every = 1
[omni.stores.S001]
lat = 52.37
lon = 4.90
[omni.stores.S002]
lat = 51.92
lon = 4.48
[omni.postcodes]
"3011" = [51.92, 4.48]
"""


def cli(central: CentralProcess, *args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(main, [*args[:2], "--url", central.url, *args[2:]],
                                input=stdin, env={"EDGE_CENTRAL_ADMIN_TOKEN": ADMIN_TOKEN})
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)


def assigns(store: FakeStore, kind: str = "order.assign") -> list[dict[str, Any]]:
    with store.lock:
        return [c for c in store.commands if c["type"] == kind]


def test_order_through_the_real_central_survives_sigkill(tmp_path: Path, broker: Broker
                                                         ) -> None:
    central = CentralProcess(tmp_path / "central", broker.url, ["S001", "S002"],
                             extra_config=OMNI)
    central.start()
    s1, s2 = FakeStore(broker.port, "S001"), FakeStore(broker.port, "S002")
    try:
        for fake, qty in ((s1, 4), (s2, 4)):
            fake.birth()
            fake.send([receipt(1, "A-1", qty)])
            fake.wait_ack(1)
        wait_until(lambda: cli(central, "atp", "get", "A-1")["skus"][0]["atp"] == 8,
                   what="ATP over the CLI")
        request = {"order_id": "W-100", "channel": "marketplace-x",
                   "lines": [{"sku": "A-1", "qty": 3}], "fulfilment": "ship",
                   "ship_to": {"postcode": "3011"}}
        created = cli(central, "orders", "create", "-", stdin=orjson.dumps(request).decode())
        assert created["state"] == "brokered"
        first = wait_until(lambda: assigns(s2), what="assigned to S002")[0]
        s2.send([store_event(2, "order.rejected", {
            "order_id": "W-100", "reservation_id": first["data"]["reservation_id"],
            "reason": "damaged", "lines": [{"sku": "A-1", "qty": 3}]},
            reserve=[{"sku": "A-1", "delta": -3}])])
        s2.wait_ack(2)
        second = wait_until(lambda: assigns(s1), what="re-brokered to S001")[0]
        assert second["data"]["channel"] == "marketplace-x"

        central.kill()
        central.start()
        shown = cli(central, "orders", "show", "W-100")
        assert shown["state"] == "brokered"
        assert [h["event"] for h in shown["history"]] == [
            "received", "brokered", "rejected", "brokered"]
        again = cli(central, "orders", "create", "-", stdin=orjson.dumps(request).decode())
        assert again["order_id"] == "W-100"
        detail = cli(central, "atp", "get", "A-1", "--detail")["skus"][0]
        cells = {c["store"]: c for c in detail["stores"]}
        assert cells["S002"]["hold"] == 3  # the rejection hold survived the restart
        assert cells["S001"]["reserved"] == 3
        listed = cli(central, "orders", "list", "--state", "brokered")["orders"]
        assert [o["order_id"] for o in listed] == ["W-100"]
        cancelled = cli(central, "orders", "cancel", "W-100")
        assert cancelled["state"] == "cancelled"
        wait_until(lambda: assigns(s1, "order.cancel"), what="cancel reaches S001")
    finally:
        s1.close()
        s2.close()
        central.terminate()
