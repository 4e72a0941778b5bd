"""A small test-side central peer (PROTOCOL v1, central side): applies events in seq
order per epoch, acks, issues and resends commands, serves the §5.3 snapshot over HTTP.
Not the reference central (``central``): small and controllable, for the store-side tests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson

from sync.wire import canonical_json, digest_lines, now_ts
from tests.helpers.mosquitto import Broker
from tests.helpers.progress import StallWatch

STORE = "S001"
ROOT = "retail"
TOKEN = "test-token-0123456789"  # noqa: S105 - a test bearer token


@dataclass
class PeerCentral:
    """A test central for one store. Not the reference central: small and controllable."""

    port: int
    store: str = STORE
    root: str = ROOT
    retain_acks: bool = True
    drop_event_batches: set[int] = field(default_factory=set)  # ordinal of received batches
    drop_command_publishes: set[int] = field(default_factory=set)  # cseqs never sent first time
    resend_after: float = 1.0
    stalled: bool = False  # while True, event batches are ignored: no apply, no ack
    ack_live_births: bool = False  # §4.3: a live birth beyond what was applied gets an ack

    applied: dict[str, int] = field(default_factory=dict)
    hashes: dict[tuple[str, int], str] = field(default_factory=dict)
    applied_events: list[tuple[str, int, str]] = field(default_factory=list)
    raw_batches: list[bytes] = field(default_factory=list)
    batches_received: int = 0
    duplicates: int = 0
    conflicts: int = 0
    gaps: int = 0
    stock: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    count_requests: dict[str, list[str]] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    store_cseq: int | None = None
    statuses: list[dict[str, Any]] = field(default_factory=list)
    digests: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, bytes] = field(default_factory=dict)
    snapshots_served: int = 0
    fail_snapshots: int = 0
    http_port: int = 0
    _client: aiomqtt.Client | None = None
    _last_resend: float = 0.0
    _received: int = 0  # messages handled: what wait_for watches for progress
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the peer's subscriptions are acknowledged (cleared while it reconnects)."""

    def topic(self, rest: str) -> str:
        return f"{self.root}/v1/stores/{self.store}/{rest}"

    # -- MQTT ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Reconnects after the broker went away (like a real central)."""
        while True:
            try:
                await self._run_once()
            except* (aiomqtt.MqttError, OSError):
                pass
            self._client = None
            self.subscribed.clear()
            await asyncio.sleep(0.1)

    async def _run_once(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"peer-{uuid.uuid4()}",
                                  protocol=aiomqtt.ProtocolVersion.V5, clean_start=True) as c:
            self._client = c
            await c.subscribe([(self.topic(t), 1) for t in (
                "status", "events", "commands/ack", "digest", "health", "devices/+")])
            self.subscribed.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._resend_timer())
                async for message in c.messages:
                    payload = message.payload
                    assert isinstance(payload, bytes | bytearray)
                    await self._on_message(str(message.topic), bytes(payload),
                                           retained=bool(message.retain))
                    self._received += 1
                    self._changed.set()

    async def _on_message(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        rest = topic.removeprefix(self.topic(""))
        if rest.startswith("devices/"):
            self.devices[rest.removeprefix("devices/")] = payload
            return
        obj = orjson.loads(payload)
        if rest == "events":
            await self._on_events(obj, payload)
        elif rest == "status":
            self.statuses.append(obj)
            applied = self.applied.get(obj["epoch"], 0)
            if (self.ack_live_births and obj["state"] == "online" and not retained
                    and (obj.get("last_seq") or 0) > applied):
                await self.ack(obj["epoch"], applied)
            if obj["state"] == "online" and "applied_cseq" in obj:
                await self._resend(obj["applied_cseq"])
        elif rest == "commands/ack":
            self.store_cseq = obj["through_cseq"]
            if obj["through_cseq"] < len(self.commands):
                await self._resend(obj["through_cseq"])
        elif rest == "digest":
            self.digests.append(obj)
        elif rest == "health":
            self.health.append(obj)

    async def _on_events(self, batch: dict[str, Any], raw: bytes) -> None:
        self.batches_received += 1
        if self.stalled or self.batches_received in self.drop_event_batches:
            return  # "lost in transit": no apply, no ack
        self.raw_batches.append(raw)
        epoch = batch["epoch"]
        applied = self.applied.setdefault(epoch, 0)
        for event in batch["events"]:
            seq = event["seq"]
            digest = hashlib.sha256(canonical_json(event)).hexdigest()
            if seq <= applied:
                self.duplicates += 1
                if self.hashes[(epoch, seq)] != digest:
                    self.conflicts += 1
                continue
            if seq > applied + 1:
                self.gaps += 1
                break
            self.hashes[(epoch, seq)] = digest
            self._apply_event(event)
            self.applied_events.append((epoch, seq, event["id"]))
            applied = seq
        self.applied[epoch] = applied
        await self.ack(epoch, applied)

    async def ack(self, epoch: str, through: int, *, retain: bool | None = None) -> None:
        assert self._client is not None
        await self._client.publish(
            self.topic("events/ack"),
            canonical_json({"v": 1, "store": self.store, "epoch": epoch, "through_seq": through,
                            "ts": now_ts()}),
            qos=1, retain=self.retain_acks if retain is None else retain,
        )

    def _apply_event(self, event: dict[str, Any]) -> None:
        for d in event.get("stock", []):
            self.stock[d["sku"]][0] += d["delta"]
        for d in event.get("reserve", []):
            self.stock[d["sku"]][1] += d["delta"]
        data = event.get("data", {})
        if event["type"] in ("fulfilment", "reservation.released"):
            self.reservations.pop(data.get("reservation_id"), None)
        if event["type"] == "count":
            self.count_requests.pop(data.get("count_id"), None)

    # -- commands -----------------------------------------------------------------------
    async def send(self, type_: str, data: dict[str, Any] | None = None, *,
                   stock: list[tuple[str, int]] = (),  # type: ignore[assignment]
                   reserve: list[tuple[str, int]] = ()) -> int:  # type: ignore[assignment]
        cseq = len(self.commands) + 1
        data = data or {}
        command = {"cseq": cseq, "id": str(uuid.uuid4()), "type": type_, "ts": now_ts(),
                   "data": data}
        if stock:
            command["stock"] = [{"sku": s, "delta": d} for s, d in stock]
        if reserve:
            command["reserve"] = [{"sku": s, "delta": d} for s, d in reserve]
        self.commands.append(command)
        for s, d in stock:
            self.stock[s][0] += d
        for s, d in reserve:
            self.stock[s][1] += d
        if type_ == "reservation.create":
            self.reservations[data["reservation_id"]] = {
                "reservation_id": data["reservation_id"], "order_ref": data["order_ref"],
                "lines": data["lines"], "expires_at": data.get("expires_at"),
                "cancel_requested": False}
        elif type_ == "reservation.cancel" and data["reservation_id"] in self.reservations:
            self.reservations[data["reservation_id"]]["cancel_requested"] = True
        elif type_ == "count.request":
            self.count_requests[data["count_id"]] = data["skus"]
        elif type_ == "catalog.upsert":
            for item in data["items"]:
                self.catalog[item["sku"]] = item
        if cseq not in self.drop_command_publishes:
            await self._publish_commands([command])
        return cseq

    async def _publish_commands(self, commands: list[dict[str, Any]]) -> None:
        assert self._client is not None
        await self._client.publish(self.topic("commands"), canonical_json(
            {"v": 1, "store": self.store, "commands": commands}), qos=1)

    async def _resend(self, through: int) -> None:
        if through >= len(self.commands) or time.monotonic() - self._last_resend < 1.0:
            return
        self._last_resend = time.monotonic()
        await self._publish_commands(self.commands[through:through + 1000])

    async def _resend_timer(self) -> None:
        while True:
            await asyncio.sleep(self.resend_after)
            if self.store_cseq is not None and self.store_cseq < len(self.commands):
                await self._resend(self.store_cseq)

    # -- views ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "v": 1, "store": self.store, "through_cseq": len(self.commands),
            "epochs": dict(self.applied),
            "catalog": list(self.catalog.values()),
            "stock": [{"sku": s, "on_hand": v[0], "reserved": v[1]}
                      for s, v in self.stock.items() if v != [0, 0]],
            "reservations": list(self.reservations.values()),
            "count_requests": [{"count_id": k, "skus": v} for k, v in self.count_requests.items()],
        }

    def digest(self) -> tuple[int, str]:
        return digest_lines((s, v[0], v[1]) for s, v in self.stock.items())

    async def wait_for(self, predicate: Callable[[], bool], limit: float = 15.0) -> None:
        """Wait until ``predicate()``; fail only when no message reached this central for
        ``limit`` seconds (a stall), however long the whole wait takes under load."""
        watch = StallWatch(limit, "the test central's condition")
        while not predicate():
            watch.see(self._received)
            watch.check()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._changed.wait()

    # -- HTTP snapshot -------------------------------------------------------------------
    async def serve_http(self) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                auth = [h for h in lines if h.lower().startswith("authorization:")]
                if path != f"/v1/stores/{self.store}/snapshot":
                    status, body = "404 Not Found", b"{}"
                elif [a.lower() for a in auth] != [f"authorization: bearer {TOKEN}"]:
                    status, body = "401 Unauthorized", b"{}"
                elif self.fail_snapshots > 0:
                    self.fail_snapshots -= 1
                    status, body = "503 Service Unavailable", b"{}"
                else:
                    self.snapshots_served += 1
                    status, body = "200 OK", canonical_json(self.snapshot())
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                             .encode() + body)
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.http_port = server.sockets[0].getsockname()[1]
        return server


@contextlib.asynccontextmanager
async def running_peer(broker: Broker, **kw: Any) -> AsyncIterator[PeerCentral]:
    peer = PeerCentral(port=broker.port, **kw)
    server = await peer.serve_http()
    task = asyncio.create_task(peer.run(), name="test.peer")
    try:
        async with asyncio.timeout(60):
            await peer.subscribed.wait()  # the SUBACK came: subscriptions in place
        yield peer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
        server.close()
        await server.wait_closed()
