"""The reader base classes: reconnect loop, device state, counters, the serial session.

Every reader's :meth:`DeviceReader.run` runs until cancelled: it opens the port,
reads, and on any failure (port absent, unplugged, EOF, optional extra missing)
records the state, emits a :class:`~drivers.events.DeviceStateEvent`, waits a
jittered capped exponential backoff (``reconnect_initial_s`` doubling up to
``reconnect_max_s``, each delay drawn from [d/2, d]) and tries again.  The first
failure of a streak is logged at warning, repeats at debug.

``emit`` is called synchronously on the event-loop thread.  Serial I/O uses
``serial_asyncio_fast`` (non-blocking fd transport; ``socket://`` via asyncio
sockets), so the loop is never blocked.  :class:`SerialReader` feeds each read to
the subclass's parser and hands every frame to ``_on_frame``, every
:class:`~drivers.framing.Rejected` item to the shared rejection count.

Card data: every scanned code goes through ``card_filter`` (default
:func:`drivers.carddata.is_card_data` without a catalog) in :meth:`DeviceReader._scan`
before anything else; a hit is counted in ``card_data_rejected`` and reported as
``RejectedInput("card_data_rejected")``, never logged or emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import serial
import serial_asyncio_fast
import structlog

from drivers.backoff import Backoff
from drivers.carddata import is_card_data
from drivers.config import DeviceSettingsBase
from drivers.errors import DriverError, DriverUnavailable, PortError
from drivers.events import (
    DeviceEvent,
    DeviceState,
    DeviceStateEvent,
    DeviceStatus,
    RejectedInput,
    ScanEvent,
)
from drivers.framing import Rejected

__all__ = [
    "READ_SIZE",
    "CardFilter",
    "DeviceReader",
    "Emit",
    "FrameParser",
    "SerialReader",
    "backoff_delay",
]

Emit = Callable[[DeviceEvent], None]
CardFilter = Callable[[str], bool]
READ_SIZE = 4096
_jitter = random.SystemRandom()


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Delay before retry number ``attempt`` (0-based): capped exponential, equal jitter."""
    return Backoff(initial, maximum, "equal", attempt, _jitter).next_delay()


class DeviceReader(ABC):
    """Base of all readers.  Subclasses implement :meth:`_session`."""

    kind: ClassVar[str]
    settings_model: ClassVar[type[DeviceSettingsBase]]
    """The settings this reader reads (:func:`drivers.readers.open_reader` looks it up)."""

    def __init__(
        self, settings: DeviceSettingsBase, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._card_filter: CardFilter = card_filter or is_card_data
        self._log = structlog.get_logger().bind(device=settings.name, kind=self.kind)
        self._state: DeviceState = "disconnected"
        self._since = time.time()
        self._detail = "not started"
        self.reads = 0
        self.frames_rejected = 0
        self.reconnects = 0
        self.card_data_rejected = 0
        self._ever_connected = False
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s,
                                "equal", rng=_jitter)
        self._failing = False

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    @abstractmethod
    def port(self) -> str: ...

    @property
    def status(self) -> DeviceStatus:
        return DeviceStatus(
            name=self.settings.name,
            kind=self.kind,
            port=self.port,
            state=self._state,
            since=self._since,
            detail=self._detail,
            reads=self.reads,
            frames_rejected=self.frames_rejected,
            reconnects=self.reconnects,
            card_data_rejected=self.card_data_rejected,
        )

    # -- state -------------------------------------------------------------

    def _set_state(self, state: DeviceState, detail: str) -> None:
        if state == self._state and detail == self._detail:
            return
        self._state = state
        self._detail = detail
        self._since = time.time()
        self._emit(DeviceStateEvent(device=self.name, state=state, detail=detail))

    def _connected(self) -> None:
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._backoff.reset()
        if self._failing:
            self._log.info("device.recovered", port=self.port)
        self._failing = False
        self._set_state("connected", "")

    def _failed(self, state: DeviceState, detail: str) -> None:
        log = self._log.debug if self._failing else self._log.warning
        log("device.failed", state=state, reason=detail, port=self.port)
        self._failing = True
        self._set_state(state, detail)

    # -- main loop ---------------------------------------------------------

    async def run(self) -> None:
        """Read until cancelled, reconnecting forever.  Raises only CancelledError."""
        while True:
            try:
                await self._session()
                self._failed("disconnected", "port closed")
            except DriverUnavailable as exc:
                self._failed("error", str(exc))
                self._backoff.attempt = max(self._backoff.attempt, 64)  # retry at the cap
            except (DriverError, OSError, serial.SerialException) as exc:
                self._failed("disconnected", str(exc) or type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 -- run() must never raise; report and retry
                self._log.exception("device.crashed", port=self.port)
                self._failed("error", f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self._session_ended()
            await asyncio.sleep(self._backoff.next_delay())

    @abstractmethod
    async def _session(self) -> None:
        """Open the device, call :meth:`_connected`, read until it fails."""

    def _session_ended(self) -> None:  # noqa: B027 -- optional hook
        """Called after each session (presence readers flush 'gone' events here)."""

    # -- helpers -----------------------------------------------------------

    def _rejected(self, item: Rejected) -> None:
        self.frames_rejected += 1
        self._log.debug("device.frame_rejected", reason=item.reason)
        self._emit(RejectedInput(device=self.name, reason=item.reason))

    def _scan(self, code: str, symbology: str | None) -> None:
        if self._card_filter(code):
            self.card_data_rejected += 1
            self._emit(RejectedInput(device=self.name, reason="card_data_rejected"))
            return
        self.reads += 1
        self._emit(ScanEvent(device=self.name, code=code, symbology=symbology))


class FrameParser(Protocol):
    """A sans-IO parser of :mod:`drivers.framing`'s contract."""

    def feed(self, data: bytes) -> Sequence[object]: ...


class SerialReader(DeviceReader):
    """A reader over a pyserial URL/path; subclasses own a parser, frames and ticks."""

    tick_s: float | None = None
    _parser: FrameParser

    def __init__(
        self,
        settings: DeviceSettingsBase,
        emit: Emit,
        *,
        port: str,
        baudrate: int,
        card_filter: CardFilter | None = None,
    ) -> None:
        super().__init__(settings, emit, card_filter=card_filter)
        self._port = port
        self._baudrate = baudrate

    @property
    def port(self) -> str:
        return self._port

    def _next_tick(self) -> float | None:
        """Seconds the next read may wait before :meth:`_on_tick`; None: no tick needed."""
        return self.tick_s

    async def _session(self) -> None:
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self._port, baudrate=self._baudrate
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(str(exc) or f"cannot open {self._port}", port=self._port) from exc
        try:
            self._connected()
            self._on_open(writer)
            while True:
                tick = self._next_tick()
                try:
                    if tick is None:
                        data = await reader.read(READ_SIZE)
                    else:
                        async with asyncio.timeout(tick):
                            data = await reader.read(READ_SIZE)
                except TimeoutError:
                    self._on_tick(writer, time.time())
                    continue
                except (serial.SerialException, OSError) as exc:
                    raise PortError(f"read failed on {self._port}: {exc}",
                                    port=self._port) from exc
                if not data:
                    raise PortError(f"{self._port}: end of stream", port=self._port)
                self._on_data(data, time.time())
                if tick is not None:
                    self._on_tick(writer, time.time())
        finally:
            try:
                self._on_close(writer)
            finally:
                writer.close()
                # the transport reports connection_lost in a task of its own: let it
                # finish, so that no task outlives the session
                with contextlib.suppress(OSError, serial.SerialException, TimeoutError):
                    async with asyncio.timeout(5.0):
                        await writer.wait_closed()

    def _on_open(self, writer: asyncio.StreamWriter) -> None:
        """Called once the port is open (send start commands here)."""

    def _on_close(self, writer: asyncio.StreamWriter) -> None:
        """Called before the port is closed (best-effort stop commands)."""

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        """Called at least every ``tick_s`` seconds while connected."""

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, Rejected):
                self._rejected(item)
            else:
                self._on_frame(item, now)

    @abstractmethod
    def _on_frame(self, frame: Any, now: float) -> None:
        """One complete frame of this reader's parser (never a ``Rejected``)."""
