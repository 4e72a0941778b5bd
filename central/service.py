"""I/O shell of the reference central: the MQTT client, the writer thread, the HTTP server.

Threads, not coroutines, on the hot path, on purpose: paho's network thread hands each
message to a bounded queue (its blocking ``put`` is the back-pressure), and ONE writer
thread drains whatever has accumulated, applies it in one transaction (group commit) and
publishes the acks right after the commit. Operator commands from the HTTP API are jobs
on the same queue, so the writer is the only one that ever writes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.batches import FastBatch
from central.byte_queue import ByteBoundedInbox
from central.config import CentralConfig, TokenBook
from central.core import Core
from central.engine.state import NOT_DECODED, Inbound, Publish, predecode
from central.history import Compactor
from central.orders import OmniEngine
from central.ownership import Ownership
from central.storage import Database
from sync.wire import now_ts

log = logging.getLogger("central.service")

T = TypeVar("T")

SUBSCRIPTIONS = ("status", "events", "commands/ack", "digest", "health", "devices/+")
"""Central reads these per store (``{root}/v1/stores/+/…``). Subscribing to ``+/#`` would
also feed central its own acks and commands back: the same filter set, minus echo."""


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[Core], tuple[Any, list[Publish]]]
    future: concurrent.futures.Future[Any]


_Item = Inbound | _Job

INBOX_BYTES = 64 * 1024 * 1024
"""Messages (and their decoded form) the writer may have waiting before the MQTT thread
blocks: a few seconds of a fast store's backlog, whatever the message sizes."""

GROUP_BYTES = 16 * 1024 * 1024
"""One group transaction stops taking messages past this many payload bytes."""


class Writer:
    """The single writer: drains the inbox in groups, commits, then publishes."""

    def __init__(self, core: Core, publish: Callable[[list[Publish]], None],
                 max_group: int = 500, inbox_bytes: int = INBOX_BYTES) -> None:
        self.core = core
        self.publish = publish
        self.max_group = max_group
        self.inbox: ByteBoundedInbox[_Item] = ByteBoundedInbox(inbox_bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central.writer", daemon=True)
        self.busy_seconds = 0.0  # applying + committing
        self.publish_seconds = 0.0  # handing acks and commands to the MQTT client

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def submit(self, fn: Callable[[Core], tuple[T, list[Publish]]]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.inbox.put(_Job(fn, future), 1)
        return future

    def put_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """From the MQTT thread: decode an event batch here, then queue it (blocks while
        the inbox is full)."""
        try:
            decoded = predecode(topic, payload)
        except Exception:  # a bug must not kill the network thread: the writer decides
            log.exception("could not pre-decode a message on %s", topic)
            decoded = NOT_DECODED
        size = len(payload) if isinstance(decoded, FastBatch) else 0
        self.inbox.put(Inbound(topic, payload, retained, decoded), len(payload) + size + 200)

    def _run(self) -> None:
        next_tick = time.monotonic() + 0.2
        next_checkpoint = time.monotonic() + 60
        inbox = self.inbox
        while not self._stop.is_set():
            first = inbox.get(timeout=0.1)
            messages: list[Inbound] = []
            job: _Job | None = None
            item: _Item | None = first
            group_bytes = 0
            while item is not None:
                if isinstance(item, _Job):
                    job = item
                    break
                messages.append(item)
                group_bytes += len(item.payload)
                if len(messages) >= self.max_group or group_bytes >= GROUP_BYTES:
                    break
                item = inbox.get_nowait()
            if messages:
                self._safe(lambda m=messages: self.core.process(m))  # type: ignore[misc]
            if job is not None:
                self._run_job(job)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.2
                self._safe(self.core.tick)
            if first is None:
                # idle: checkpoint the stock projection, and now and then the SQLite WAL
                # (which would otherwise grow behind long-lived readers)
                self._safe(self._flush_projection)
                if now >= next_checkpoint:
                    next_checkpoint = now + 60
                    self.core.checkpoint()
        self._safe(self._flush_projection)
        self.core.conn.close()

    def _flush_projection(self) -> list[Publish]:
        self.core.flush_projection()
        return []

    def _safe(self, fn: Callable[[], list[Publish]]) -> None:
        started = time.perf_counter()
        try:
            out = fn()
        except Exception:
            log.exception("writer step failed")
            return
        finally:
            self.busy_seconds += time.perf_counter() - started
        if out:
            started = time.perf_counter()
            self.publish(out)
            self.publish_seconds += time.perf_counter() - started

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result, out = job.fn(self.core)
        except Exception as exc:  # noqa: BLE001 - handed to the HTTP caller, not swallowed
            job.future.set_exception(exc)
            return
        job.future.set_result(result)
        if out:
            self.publish(out)


def release_client(client: mqtt.Client) -> None:
    """Drop a stopped client's callbacks. They are bound methods of its owner, a reference
    cycle; freed by refcount instead, paho's ``__del__`` closes its wake-up socket pair
    before the sockets are finalised (no ResourceWarning from the cyclic collector)."""
    client.on_connect = None
    client.on_disconnect = None
    client.on_message = None
    client.on_subscribe = None
    client.on_publish = None
    client.on_socket_open = None


class MqttLink:
    """paho client in its own network thread: clean start, QoS 1, TCP_NODELAY."""

    def __init__(self, config: CentralConfig, on_message: Callable[[str, bytes, bool], None],
                 on_connected: Callable[[], None] | None = None) -> None:
        self.config = config
        self._on_connected_cb = on_connected
        self.connected = threading.Event()
        self.auth_failed = False
        b = config.broker
        self.v5 = b.protocol == "5"  # else MQTT 3.1.1 (a clean session, no properties)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=b.effective_client_id,
                             protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                             clean_session=None if self.v5 else True)
        if b.username:
            password = b.password()
            client.username_pw_set(b.username,
                                   password.get_secret_value() if password else None)
        if b.tls:
            context = ssl.create_default_context(
                cafile=str(b.tls_ca_file) if b.tls_ca_file else None)
            if b.tls_cert_file is not None:
                context.load_cert_chain(str(b.tls_cert_file),
                                        str(b.tls_key_file) if b.tls_key_file else None)
            client.tls_set_context(context)
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(0)
        # One client per worker, not thousands: retrying every 2 s at most costs the broker
        # nothing and brings the chain's acks back seconds after the broker returns.
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_socket_open = self._on_socket_open
        self._deliver = on_message
        client.on_message = self._on_message
        self.client = client
        self.filters: Callable[[], list[str]] | None = None  # central.ownership: own stores only

    def start(self) -> None:
        b = self.config.broker
        if not self.v5:
            self.client.connect_async(b.host, b.port, keepalive=b.keepalive)
            self.client.loop_start()
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
        props.SessionExpiryInterval = 0
        self.client.connect_async(b.host, b.port, keepalive=b.keepalive, clean_start=True,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)

    @staticmethod
    def _on_socket_open(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            self.auth_failed = reason.value in (0x86, 0x87, 0x8C)
            log.error("broker refused the connection: %s", reason)
            return
        root = self.config.root
        if self.filters is None:
            client.subscribe([(f"{root}/v1/stores/+/{rest}", 1) for rest in SUBSCRIPTIONS])
        else:
            self.subscribe_topics(self.filters())
        self.connected.set()
        if self._on_connected_cb is not None:
            self._on_connected_cb()
        log.info("connected to %s", self.config.broker.url)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _props: Any) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._deliver(message.topic, bytes(message.payload), bool(message.retain))

    def subscribe_topics(self, topics: list[str]) -> None:
        for start in range(0, len(topics), 500):  # SUBSCRIBE packets of bounded size
            self.client.subscribe([(t, 1) for t in topics[start:start + 500]])

    def unsubscribe_topics(self, topics: list[str]) -> None:
        for start in range(0, len(topics), 500):
            self.client.unsubscribe(topics[start:start + 500])

    def publish(self, items: list[Publish]) -> None:
        for item in items:
            info = self.client.publish(item.topic, item.payload, qos=1, retain=item.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # the store's resend rules (events) and ours (commands) repair this
                log.warning("publish to %s not queued: rc=%s", item.topic, info.rc)


class CentralService:
    """Everything but the HTTP server: database, core, writer thread, MQTT link."""

    def __init__(self, config: CentralConfig) -> None:
        self.config = config
        self.db = Database(config.database_url)
        self.db.create_schema()
        self.ownership = Ownership(self.db, config) if config.ownership.enabled else None
        owns = self.ownership.fencing.owns if self.ownership else config.partition.owns
        self.omni = OmniEngine(config.omni, owns=owns)
        self.core = Core(self.db.connect(), root=config.root, resend_after=config.resend_after,
                         owns=owns, watcher=self.omni)
        self.omni.attach(self.core.conn)
        self.link = MqttLink(config, self._on_message, self._on_connected)
        if self.ownership is not None:  # central.ownership: leases, fencing, own stores only
            self.core.fencing = self.ownership.fencing
            self.link.filters = self.ownership.filters
            self.ownership.attach(self.call, self.link.subscribe_topics,
                                  self.link.unsubscribe_topics)
        self.writer = Writer(self.core, self.link.publish, config.max_group_messages)
        self.compactor = Compactor(self.db, config.history)  # bounded history
        self.tokens = TokenBook(config.http.store_tokens_dir, config.admin_token_path())
        generated = self.tokens.ensure_admin_token()
        if generated is not None:
            log.warning("operator token generated in %s (mode 0600): edge-central commands "
                        "read it with --token-file", generated)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        self.writer.put_message(topic, payload, retained)

    def _on_connected(self) -> None:
        # From the MQTT thread: the writer owns the core; it publishes the acks it holds.
        self.writer.submit(lambda core: (None, core.current_acks(now_ts())))

    def start(self) -> None:
        self.writer.start()
        self.link.start()
        self.compactor.start()
        if self.ownership is not None:
            self.ownership.start()

    def stop(self) -> None:
        if self.ownership is not None:
            self.ownership.stop()  # hands the leases back while the writer still runs
        self.compactor.stop()
        self.link.stop()
        self.writer.stop()

    def call(self, fn: Callable[[Core], tuple[T, list[Publish]]],
             timeout: float = 30.0) -> T:
        """Run ``fn`` on the writer thread (from any other thread) and wait for it."""
        return self.writer.submit(fn).result(timeout=timeout)
