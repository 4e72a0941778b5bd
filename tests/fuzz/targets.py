"""Fuzz targets shared by the hypothesis tests (default run) and the atheris harness.

Each target takes raw bytes and feeds them to one receiver exactly as the wire would. A
target fails only when an exception other than the receiver's declared ones escapes, or
when a documented output contract breaks (a parser yields something that is neither a
frame nor a ``Rejected``; a central message handler needs its poison-message fallback,
which means it raised on input).

Stateful parsers get the bytes in chunks whose sizes come from the data itself, so frame
boundaries fall everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic

from drivers.barcode import RcnLayout, interpret
from drivers.ble import (
    AdRecord,
    SimFeedParser,
    parse_ad_structures,
    parse_eddystone_uid,
    parse_ibeacon,
)
from drivers.carddata import is_card_data, mask_card_data
from drivers.door import DoorFrame, DoorParser
from drivers.em4100 import Em4100Frame, Em4100Parser
from drivers.errors import DriverError
from drivers.framing import MAX_BUFFER, Rejected
from drivers.hid import KeyDecoder
from drivers.scanner import ScanFrame, ScanParser
from drivers.uhf import UhfFrame, UhfParser, parse_tag_notice
from sync import messages
from sync.errors import SyncError
from sync.inbox import Drop, classify
from sync.messages import CommandBatch
from sync.wire import loads

STORE = "S001"
ROOT = "retail"


def chunks(data: bytes) -> Iterator[bytes]:
    """Split ``data`` into pieces sized by its own bytes (1..64), so fuzzing moves the
    boundaries along with the content."""
    i = 0
    n = len(data)
    while i < n:
        size = (data[i] % 64) + 1
        yield data[i : i + size]
        i += size


def _check_items(items: list[Any], kinds: tuple[type, ...]) -> None:
    for item in items:
        if not isinstance(item, (Rejected, *kinds)):
            raise TypeError(f"parser yielded {item!r}")
        if isinstance(item, Rejected) and len(item.hex) > 128:
            raise AssertionError("a Rejected carries more than 64 bytes of input")


def _feed(parser: Any, data: bytes, kinds: tuple[type, ...]) -> None:
    try:
        for piece in chunks(data):
            _check_items(parser.feed(piece), kinds)
    except DriverError:
        pass  # the declared error type
    held = getattr(parser, "pending", None)  # the frame buffer's public figure
    if held is None:
        buffered = getattr(parser, "_buf", None)
        held = None if buffered is None else len(buffered)
    if held is not None and held > MAX_BUFFER + 64 * 1024:
        raise AssertionError(f"parser buffer grew to {held} bytes")


# -- drivers -------------------------------------------------------------------------------
def scanner(data: bytes) -> None:
    suffixes: tuple[Literal["CR", "LF", "CRLF", "TAB"], ...] = ("CR", "LF", "CRLF", "TAB")
    suffix = suffixes[data[0] % 4] if data else "CR"
    stx = bool(data and data[0] & 4)
    _feed(ScanParser(suffix, stx_etx=stx, prefix="P" if data and data[0] & 8 else ""),
          data[1:], (ScanFrame,))
    for frame in ScanParser(suffix).feed(data):
        if isinstance(frame, ScanFrame) and len(frame.code) > 520:
            raise AssertionError("scan code longer than the limit")


def em4100(data: bytes) -> None:
    _feed(Em4100Parser("rdm6300"), data, (Em4100Frame,))
    _feed(Em4100Parser("id12la"), data, (Em4100Frame,))


def uhf(data: bytes) -> None:
    parser = UhfParser()
    try:
        for piece in chunks(data):
            items = parser.feed(piece)
            _check_items(items, (UhfFrame,))
            for item in items:
                if isinstance(item, UhfFrame):
                    parse_tag_notice(item)
    except DriverError:
        pass


def ble(data: bytes) -> None:
    _feed(SimFeedParser(), data, (AdRecord,))
    parse_ad_structures(data)
    parse_ibeacon(data)
    parse_eddystone_uid(data)


def door(data: bytes) -> None:
    _feed(DoorParser(), data, (DoorFrame,))


def hid(data: bytes) -> None:
    decoder = KeyDecoder()
    for i in range(0, len(data) - 1, 2):
        code = decoder.feed(data[i], data[i + 1] % 3)
        if code is not None and len(code) > decoder.max_len:
            raise AssertionError("HID scan longer than its limit")


def card_filter(data: bytes) -> None:
    is_card_data(data.decode("utf-8", errors="replace"))
    is_card_data(data.decode("latin-1"))
    mask_card_data(data.decode("latin-1"))


def barcode(data: bytes) -> None:
    """The till's one reading of a code never raises (issue 13)."""
    text = data.decode("latin-1")
    interpret(text, "se", (RcnLayout("23", "weight", 5, 3),))
    interpret("]d2" + text)
    interpret("https://id.gs1.org/01/09506000134352/" + text)


# -- sync: what a store receives -----------------------------------------------------------
def wire_loads(data: bytes) -> None:
    with contextlib.suppress(SyncError):
        loads(data)


def store_commands(data: bytes) -> None:
    """The store's §5.2 drop rules: a batch or a counted Drop, never an exception."""
    result = classify(data, STORE)
    if not isinstance(result, CommandBatch | Drop):
        raise TypeError(f"classify returned {result!r}")


def message_models(data: bytes) -> None:
    try:
        obj = loads(data)
    except SyncError:
        return
    for model in (messages.EventBatch, messages.EventAck, messages.CommandBatch,
                  messages.CommandAck, messages.Status, messages.Digest, messages.Health,
                  messages.DeviceState, messages.Snapshot):
        with contextlib.suppress(pydantic.ValidationError):
            model.model_validate(obj)


# -- central: what central receives --------------------------------------------------------
class _CentralHarness:
    """One reference-central protocol core on a real SQLite file, reused across inputs."""

    SUFFIXES = ("events", "status", "commands/ack", "digest", "health", "devices/till-1",
                "devices/x", "events/ack", "commands", "unknown")

    def __init__(self) -> None:
        from central.core import Core  # noqa: PLC0415 - central is optional here
        from central.storage import Database  # noqa: PLC0415

        self._dir = tempfile.TemporaryDirectory(prefix="fuzz-central-")
        db = Database(f"sqlite:///{Path(self._dir.name) / 'central.db'}")
        db.create_schema()
        from central.omni_config import OmniSettings  # noqa: PLC0415
        from central.orders import OmniEngine  # noqa: PLC0415

        engine = OmniEngine(OmniSettings())  # as the service runs it: the order engine on
        self.core = Core(db.connect(), watcher=engine)
        engine.attach(self.core.conn)
        self.poisoned: list[str] = []
        handler = logging.Handler(level=logging.ERROR)
        handler.emit = self._record  # type: ignore[method-assign]
        logging.getLogger("central").addHandler(handler)

    def _record(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.poisoned.append(record.getMessage())

    def feed(self, data: bytes) -> None:
        suffix = self.SUFFIXES[data[0] % len(self.SUFFIXES)] if data else "events"
        store = STORE if not data or data[-1] % 8 else "S002"
        topic = f"{ROOT}/v1/stores/{store}/{suffix}"
        self.core.process([(topic, data[1:], bool(data and data[0] & 0x80))])
        self.core.tick()
        if self.poisoned:
            message = self.poisoned[0]
            self.poisoned.clear()
            raise AssertionError(f"central raised on input (poison fallback): {message}")


_central: _CentralHarness | None = None


def central(data: bytes) -> None:
    global _central  # noqa: PLW0603 - one core per fuzzing process, like the real service
    if _central is None:
        _central = _CentralHarness()
    _central.feed(data)


# -- store: events/ack through the real StoreSync receiver ---------------------------------
class _StoreHarness:
    def __init__(self) -> None:
        from edge_agent.ledger import Ledger  # noqa: PLC0415
        from edge_agent.sync_adapter import LedgerStorePort  # noqa: PLC0415
        from sync.store import StoreSync  # noqa: PLC0415
        from sync.store_settings import SyncSettings  # noqa: PLC0415

        self._dir = tempfile.TemporaryDirectory(prefix="fuzz-store-")
        self.ledger = Ledger.open(Path(self._dir.name) / "ledger.db", STORE)
        self.sync = StoreSync(SyncSettings(), LedgerStorePort(self.ledger))
        self.loop = asyncio.new_event_loop()

    def ack(self, data: bytes) -> None:
        retained = bool(data and data[0] & 1)
        self.loop.run_until_complete(
            self.sync._on_ack(data[1:], retained=retained))

    def commands(self, data: bytes) -> None:
        self.loop.run_until_complete(self.sync.inbox.handle_payload(data))

    def close(self) -> None:
        self.loop.close()
        self.ledger.close()
        self._dir.cleanup()


_store: _StoreHarness | None = None


def _store_harness() -> _StoreHarness:
    global _store  # noqa: PLW0603 - one ledger per fuzzing process
    if _store is None:
        _store = _StoreHarness()
    return _store


def store_ack(data: bytes) -> None:
    _store_harness().ack(data)


def store_inbox(data: bytes) -> None:
    _store_harness().commands(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "scanner": scanner,
    "em4100": em4100,
    "uhf": uhf,
    "ble": ble,
    "door": door,
    "hid": hid,
    "card_filter": card_filter,
    "barcode": barcode,
    "wire_loads": wire_loads,
    "store_commands": store_commands,
    "message_models": message_models,
    "central": central,
    "store_ack": store_ack,
    "store_inbox": store_inbox,
}
