"""The MQTT link: one aiomqtt connection at a time, PROTOCOL §2 and §6.

Every connection is a fresh ``aiomqtt.Client`` with ``clean_start=True`` set explicitly
(MQTT 5, session expiry 0), ``TCP_NODELAY`` on its socket, and a retained QoS 1 will.
aiomqtt/paho errors are mapped to :mod:`sync.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sync.broker import BrokerAddress, parse_broker_url, tls_context
from sync.errors import AuthenticationFailed, LinkError

log = logging.getLogger(__name__)
T = TypeVar("T")

# CONNACK codes that retrying cannot fix: MQTT 3.1.1 (4, 5) and MQTT 5 (134, 135, 138, 140).
_AUTH_CODES = frozenset({4, 5, 134, 135, 138, 140})


@dataclass(frozen=True, slots=True)
class LinkConfig:
    url: str
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30
    publish_timeout: float = 30.0
    connect_timeout: float = 15.0
    protocol: str = "5"
    """``"5"``, or ``"3.1.1"`` for a broker without MQTT 5 (NATS server's MQTT): a clean
    session instead of clean start; the will and retained messages are the same."""


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retained: bool


def _rc_value(rc: object) -> int | None:
    if isinstance(rc, ReasonCode):
        return int(rc.value)
    if isinstance(rc, int):
        return rc
    return None


# aiomqtt waits with ``asyncio.wait_for`` when given a finite timeout, and on Python 3.11
# ``wait_for`` can swallow a cancellation that arrives as the operation completes
# (gh-86296): a supervised task would then never end. So aiomqtt always gets an infinite
# timeout (a plain ``await``) and the timeouts are ours, with ``asyncio.timeout``.
_NO_TIMEOUT = math.inf


def map_mqtt_error(exc: aiomqtt.MqttError, what: str, *, connecting: bool = False
                   ) -> LinkError:
    """An authentication failure is a CONNACK refusal only. An MQTT 5 reason code names
    its packet; a bare int is ambiguous (paho's publish errors MQTT_ERR_NO_CONN = 4 and
    MQTT_ERR_CONN_REFUSED = 5 share the MQTT 3.1.1 CONNACK numbers), so it counts only
    while connecting. Mistaking a lost connection for bad credentials would park the
    store at the backoff cap."""
    if isinstance(exc, aiomqtt.MqttCodeError):
        rc = exc.rc
        if isinstance(rc, ReasonCode):
            refused = rc.packetType == PacketTypes.CONNACK and int(rc.value) in _AUTH_CODES
        else:
            refused = connecting and _rc_value(rc) in _AUTH_CODES
        if refused:
            return AuthenticationFailed(f"{what}: broker refused the credentials ({exc})",
                                        operation=what, reason_code=_rc_value(rc))
    return LinkError(f"{what}: {exc}", operation=what)


class LinkSession:
    """One established connection: publish, subscribe, iterate incoming messages.

    aiomqtt has no public "disconnected" signal; its message iterator is the one public
    place that reports a lost connection (it raises ``MqttError``). So a session reads
    that iterator in its own task (:meth:`pump`, started by :meth:`Link.connect` before
    the CONNECT goes out), queues the messages for :meth:`messages`, and sets ``lost``
    when the iterator ends: publish, subscribe and the CONNACK wait race against it.
    """

    def __init__(self, client: aiomqtt.Client, publish_timeout: float) -> None:
        self._client = client
        self._publish_timeout = publish_timeout
        self._incoming: asyncio.Queue[aiomqtt.Message | aiomqtt.MqttError] = asyncio.Queue()
        self._lost_reason: BaseException | None = None
        self.lost = asyncio.Event()
        self._waiting: dict[int, float] = {}  # id of an operation -> when it was sent
        self._ids = itertools.count()

    def unanswered_for(self) -> float:
        """Seconds the oldest publish or subscribe has waited for the broker's answer (0
        when none waits): a stalled broker keeps the TCP connection open and says nothing,
        so this, not the socket, tells whether the link really works."""
        if not self._waiting:
            return 0.0
        return time.monotonic() - min(self._waiting.values())

    async def pump(self) -> None:
        """Until the connection ends: aiomqtt's messages into our queue, then ``lost``."""
        try:
            async for message in self._client.messages:
                self._incoming.put_nowait(message)
        except aiomqtt.MqttError as exc:
            self._lost_reason = exc.__cause__ or exc
            self._incoming.put_nowait(exc)
        finally:
            self.lost.set()

    async def race(self, operation: Coroutine[Any, Any, T], what: str, *, within: float,
                   lost: str, late: str) -> T:
        """``operation`` within ``within`` seconds, cut short by a lost connection: aiomqtt
        leaves a pending CONNACK/PUBACK/SUBACK wait hanging when the connection drops.
        Raises LinkError ``"{what}: {lost}"`` or ``"{what}: {late}"`` (an unknown outcome:
        a publish may still arrive)."""
        if self.lost.is_set():
            operation.close()
            raise LinkError(f"{what}: not connected", operation=what)
        task = asyncio.ensure_future(operation)
        ident = next(self._ids)
        self._waiting[ident] = time.monotonic()
        gone = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait((task, gone), timeout=within,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            gone.cancel()
            del self._waiting[ident]
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
        if self.lost.is_set():
            raise LinkError(f"{what}: {lost.format(reason=self._lost_reason)}", operation=what)
        raise LinkError(f"{what}: {late}", operation=what)

    async def _acknowledged(self, operation: Coroutine[Any, Any, object], what: str) -> None:
        try:
            await self.race(operation, what, within=self._publish_timeout,
                            lost="disconnected before the broker's acknowledgement",
                            late=f"no acknowledgement within {self._publish_timeout} s")
        except aiomqtt.MqttError as exc:
            raise map_mqtt_error(exc, what) from exc

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Waits for the PUBACK. A raise means *unknown*: the message may still arrive."""
        await self._acknowledged(
            self._client.publish(topic, payload, qos=qos, retain=retain, timeout=_NO_TIMEOUT),
            f"publish to {topic}",
        )

    async def subscribe(self, *topics: str) -> None:
        await self._acknowledged(
            self._client.subscribe([(t, 1) for t in topics], timeout=_NO_TIMEOUT), "subscribe"
        )

    async def messages(self) -> AsyncIterator[Incoming]:
        while True:
            item = await self._incoming.get()
            if isinstance(item, aiomqtt.MqttError):
                self._incoming.put_nowait(item)  # a later reader sees the end too
                raise map_mqtt_error(item, "receive") from item
            payload = item.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = b""
            yield Incoming(str(item.topic), bytes(payload), bool(item.retain))


class Link:
    """Makes connections; the caller (``StoreSync``) owns the reconnect loop and backoff."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.address = parse_broker_url(config.url)
        self._tls = (tls_context(config.ca_file, config.cert_file, config.key_file)
                     if self.address.tls else None)

    async def reachable(self, within: float) -> bool:
        """A cheap reachability signal: can a TCP connection to the broker be opened?

        One SYN and a close; no TLS, no MQTT. Used while waiting to reconnect, so that a
        broker that comes back is noticed in about a probe interval instead of a backoff
        that has grown towards its cap.
        """
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.address.host, self.address.port), within
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    @asynccontextmanager
    async def connect(
        self, *, will_topic: str, will_payload: bytes
    ) -> AsyncIterator[LinkSession]:
        cfg = self.config
        v5 = cfg.protocol != "3.1.1"
        options: dict[str, Any] = (
            {"protocol": aiomqtt.ProtocolVersion.V5,
             "clean_start": True}  # explicit on every connection (aiomqtt's default: FIRST_ONLY)
            if v5 else {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": True})
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            will=aiomqtt.Will(will_topic, will_payload, qos=1, retain=True),
            keepalive=cfg.keepalive,
            # The CONNACK wait is aiomqtt's own, bounded: when it times out aiomqtt
            # replaces its connection future, whereas cancelling __aenter__ would leave
            # it cancelled, and a late DISCONNECT of that half-open connection (a stalled
            # broker waking up) then raised CancelledError inside aiomqtt's socket
            # callback: "Exception in callback ..." at error level. Publish and
            # subscribe pass _NO_TIMEOUT themselves.
            timeout=cfg.connect_timeout,
            tls_context=self._tls,
            max_inflight_messages=20,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            **options,
        )
        client.pending_calls_threshold = 1000
        where = f"{self.address.host}:{self.address.port}"
        session = LinkSession(client, cfg.publish_timeout)
        pump = asyncio.create_task(session.pump(), name=f"link.pump.{cfg.client_id}")
        try:
            try:
                # aiomqtt's own CONNACK timeout fires first (see timeout= above); ours is
                # the backstop, and the race ends the wait early on a lost connection
                await session.race(
                    client.__aenter__(), f"connect to {where}",
                    within=cfg.connect_timeout + 5.0,
                    lost="connection lost ({reason})",
                    late=f"no CONNACK within {cfg.connect_timeout} s")
            except aiomqtt.MqttError as exc:
                if str(exc) == "Operation timed out":
                    # The TCP connection is open (a stalled broker's kernel accepted it):
                    # close it now, so the broker waking up finds nothing of ours to answer.
                    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                        async with asyncio.timeout(1.0):
                            await client.__aexit__(None, None, None)
                    raise LinkError(f"connect to {where}: no CONNACK within "
                                    f"{cfg.connect_timeout} s") from exc
                error = map_mqtt_error(exc, f"connect to {where}", connecting=True)
                # aiomqtt turns the socket's OSError into a plain MqttError ("from None"
                # keeps it as the context): the TCP connect itself failed
                error.unreachable = (isinstance(exc.__context__, OSError)
                                     and not isinstance(exc, aiomqtt.MqttCodeError))
                raise error from exc
            try:
                yield session
            finally:
                try:
                    async with asyncio.timeout(5.0):
                        await client.__aexit__(None, None, None)
                except (aiomqtt.MqttError, TimeoutError) as exc:
                    log.debug("link: disconnect: %r", exc)
        finally:
            # after a disconnect the pump ends by itself (reading the reason, so asyncio
            # never logs "Future exception was never retrieved"); else it is cancelled
            try:
                await asyncio.wait((pump,), timeout=1.0)
            finally:  # even when cancelled during that wait
                pump.cancel()
                await asyncio.wait((pump,))


__all__ = [
    "BrokerAddress", "Incoming", "Link", "LinkConfig", "LinkSession", "map_mqtt_error",
    "parse_broker_url",
]
