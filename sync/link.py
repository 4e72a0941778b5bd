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
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sync.errors import AuthenticationFailed, LinkError

log = logging.getLogger(__name__)

# CONNACK codes that retrying cannot fix: MQTT 3.1.1 (4, 5) and MQTT 5 (134, 135, 138, 140).
_AUTH_CODES = frozenset({4, 5, 134, 135, 138, 140})


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise LinkError(f"broker URL must be mqtt://host[:port] or mqtts://host[:port]: {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise LinkError(f"bad port in broker URL {url!r}") from exc
    return BrokerAddress(parts.hostname, port, tls)


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
            return AuthenticationFailed(f"{what}: broker refused the credentials ({exc})")
    return LinkError(f"{what}: {exc}")


class LinkSession:
    """One established connection: publish, subscribe, iterate incoming messages."""

    def __init__(self, client: aiomqtt.Client, publish_timeout: float) -> None:
        self._client = client
        self._publish_timeout = publish_timeout
        self._waiting: dict[int, float] = {}  # id of an operation -> when it was sent
        self._ids = itertools.count()

    def unanswered_for(self) -> float:
        """Seconds the oldest publish or subscribe has waited for the broker's answer (0
        when none waits): a stalled broker keeps the TCP connection open and says nothing,
        so this, not the socket, tells whether the link really works."""
        if not self._waiting:
            return 0.0
        return time.monotonic() - min(self._waiting.values())

    async def _until_disconnected(
        self, operation: Callable[[], Coroutine[Any, Any, None]], what: str
    ) -> None:
        """aiomqtt leaves a pending PUBACK/SUBACK wait hanging when the connection drops;
        end it as soon as the client knows it is disconnected (a LinkError: unknown)."""
        disconnected: asyncio.Future[None] = self._client._disconnected  # private, no API
        if disconnected.done():
            raise LinkError(f"{what}: not connected")
        task = asyncio.ensure_future(operation())
        ident = next(self._ids)
        self._waiting[ident] = time.monotonic()
        try:
            done, _ = await asyncio.wait(
                (task, disconnected), timeout=self._publish_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            del self._waiting[ident]
        if task in done:
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
        if disconnected.done():
            raise LinkError(f"{what}: disconnected before the broker's acknowledgement")
        raise LinkError(f"{what}: no acknowledgement within {self._publish_timeout} s")

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Waits for the PUBACK. A raise means *unknown*: the message may still arrive."""
        try:
            await self._until_disconnected(
                lambda: self._client.publish(
                    topic, payload, qos=qos, retain=retain, timeout=_NO_TIMEOUT
                ),
                f"publish to {topic}",
            )
        except aiomqtt.MqttError as exc:
            raise map_mqtt_error(exc, f"publish to {topic}") from exc

    async def subscribe(self, *topics: str) -> None:
        try:
            await self._until_disconnected(
                lambda: self._subscribe([(t, 1) for t in topics]), "subscribe"
            )
        except aiomqtt.MqttError as exc:
            raise map_mqtt_error(exc, "subscribe") from exc

    async def _subscribe(self, topics: list[tuple[str, int]]) -> None:
        await self._client.subscribe(topics, timeout=_NO_TIMEOUT)

    async def messages(self) -> AsyncIterator[Incoming]:
        try:
            async for message in self._client.messages:
                payload = message.payload
                if isinstance(payload, str):
                    payload = payload.encode()
                elif not isinstance(payload, bytes | bytearray):
                    payload = b""
                yield Incoming(str(message.topic), bytes(payload), bool(message.retain))
        except aiomqtt.MqttError as exc:
            raise map_mqtt_error(exc, "receive") from exc


class Link:
    """Makes connections; the caller (``StoreSync``) owns the reconnect loop and backoff."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.address = parse_broker_url(config.url)
        self._tls = self._tls_context() if self.address.tls else None

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.config
        try:
            context = ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file is not None else None
            )
            if cfg.cert_file is not None:
                context.load_cert_chain(
                    str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise LinkError(f"TLS setup failed: {exc}") from exc
        return context

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
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(will_topic, will_payload, qos=1, retain=True),
            clean_start=True,  # explicit on every connection (aiomqtt's default is FIRST_ONLY)
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
        )
        client.pending_calls_threshold = 1000
        where = f"{self.address.host}:{self.address.port}"
        # A connection lost before the CONNACK leaves aiomqtt waiting for it: race the
        # CONNACK against the disconnection, within our own timeout.
        disconnected: asyncio.Future[None] = client._disconnected  # private, no API
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            done, _ = await asyncio.wait(
                (entering, disconnected), timeout=cfg.connect_timeout + 5.0,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            entering.cancel()
            raise
        if entering not in done:
            entering.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await entering
            reason = (disconnected.exception()
                      if disconnected.done() and not disconnected.cancelled() else None)
            raise LinkError(f"connect to {where}: "
                            + (f"connection lost ({reason})" if disconnected.done()
                               else f"no CONNACK within {cfg.connect_timeout} s"))
        try:
            entering.result()
        except aiomqtt.MqttError as exc:
            if str(exc) == "Operation timed out":
                # The TCP connection is open (a stalled broker's kernel accepted it):
                # close it now, so the broker waking up finds nothing of ours to answer.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await client.__aexit__(None, None, None)
                raise LinkError(f"connect to {where}: no CONNACK within "
                                f"{cfg.connect_timeout} s") from exc
            raise map_mqtt_error(exc, f"connect to {where}", connecting=True) from exc
        try:
            yield LinkSession(client, cfg.publish_timeout)
        finally:
            try:
                async with asyncio.timeout(5.0):
                    await client.__aexit__(None, None, None)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.debug("link: disconnect: %r", exc)
            # mark the reason of an unexpected disconnection as seen (else asyncio logs
            # "Future exception was never retrieved" when the client is collected)
            for future in (disconnected, client._disconnected):  # private, no API
                if future.done() and not future.cancelled():
                    future.exception()


__all__ = ["Incoming", "Link", "LinkConfig", "LinkSession", "map_mqtt_error", "parse_broker_url"]
