"""Keyboard-wedge (HID) scanners: layout-independent decoding of Linux key codes.

The machine's keyboard layout (AZERTY, QWERTZ...) must not change what a scan
means, so key codes are decoded here with a fixed US table (scanners are
configured for US layout by default), tracking Shift and Ctrl.  Enter ends a
scan.  Ctrl+] (the usual keyboard form of GS/FNC1) yields ``\\x1d``.

:class:`KeyDecoder` is pure: feed it ``(code, value)`` pairs of ``EV_KEY``
events (value 1 = down, 0 = up, 2 = autorepeat).  :func:`open_evdev` opens and
grabs a real device (``hid`` extra, Linux only) or raises
:class:`drivers.errors.DriverUnavailable`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any, Protocol

from drivers.errors import DriverUnavailable, PortError

__all__ = ["EV_KEY", "US_KEYMAP", "KeyDecoder", "KeySource", "key_events_for", "open_evdev"]

EV_KEY = 1
KEY_ENTER = 28
KEY_KPENTER = 96
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTCTRL = 29
KEY_RIGHTCTRL = 97
KEY_CAPSLOCK = 58
KEY_RIGHTBRACE = 27

# Linux input key code -> (unshifted, shifted) on a US keyboard.
US_KEYMAP: dict[int, tuple[str, str]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"),
    7: ("6", "^"), 8: ("7", "&"), 9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"),
    12: ("-", "_"), 13: ("=", "+"), 15: ("\t", "\t"),
    16: ("q", "Q"), 17: ("w", "W"), 18: ("e", "E"), 19: ("r", "R"), 20: ("t", "T"),
    21: ("y", "Y"), 22: ("u", "U"), 23: ("i", "I"), 24: ("o", "O"), 25: ("p", "P"),
    26: ("[", "{"), 27: ("]", "}"),
    30: ("a", "A"), 31: ("s", "S"), 32: ("d", "D"), 33: ("f", "F"), 34: ("g", "G"),
    35: ("h", "H"), 36: ("j", "J"), 37: ("k", "K"), 38: ("l", "L"), 39: (";", ":"),
    40: ("'", '"'), 41: ("`", "~"), 43: ("\\", "|"),
    44: ("z", "Z"), 45: ("x", "X"), 46: ("c", "C"), 47: ("v", "V"), 48: ("b", "B"),
    49: ("n", "N"), 50: ("m", "M"), 51: (",", "<"), 52: (".", ">"), 53: ("/", "?"),
    57: (" ", " "),
    # keypad
    71: ("7", "7"), 72: ("8", "8"), 73: ("9", "9"), 74: ("-", "-"), 75: ("4", "4"),
    76: ("5", "5"), 77: ("6", "6"), 78: ("+", "+"), 79: ("1", "1"), 80: ("2", "2"),
    81: ("3", "3"), 82: ("0", "0"), 83: (".", "."), 98: ("/", "/"), 55: ("*", "*"),
}  # fmt: skip
_CHAR_TO_KEY: dict[str, tuple[int, bool]] = {}
for _code, (_lo, _hi) in sorted(US_KEYMAP.items(), reverse=True):  # main block wins over keypad
    _CHAR_TO_KEY[_hi] = (_code, _hi != _lo)
    _CHAR_TO_KEY[_lo] = (_code, False)

MAX_SCAN = 512


class KeyDecoder:
    """Turns key events into complete scans (``feed`` returns the code on Enter)."""

    def __init__(self, max_len: int = MAX_SCAN) -> None:
        self.max_len = max_len
        self._chars: list[str] = []
        self._shift = 0
        self._ctrl = 0
        self._caps = False
        self._discarding = False
        self.overflows = 0
        self.unknown_keys = 0

    def feed(self, code: int, value: int) -> str | None:
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            self._shift = max(0, self._shift + (1 if value == 1 else -1 if value == 0 else 0))
            return None
        if code in (KEY_LEFTCTRL, KEY_RIGHTCTRL):
            self._ctrl = max(0, self._ctrl + (1 if value == 1 else -1 if value == 0 else 0))
            return None
        if value != 1:  # key up / autorepeat carry no characters
            return None
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        if code in (KEY_ENTER, KEY_KPENTER):
            scan = "".join(self._chars)
            self._chars.clear()
            if self._discarding:  # the tail of an over-long input is not a code
                self._discarding = False
                return None
            return scan or None
        if self._ctrl and code == KEY_RIGHTBRACE:
            self._append("\x1d")
            return None
        pair = US_KEYMAP.get(code)
        if pair is None:
            self.unknown_keys += 1
            return None
        lo, hi = pair
        shifted = bool(self._shift)
        if self._caps and lo.isalpha():
            shifted = not shifted
        self._append(hi if shifted else lo)
        return None

    def _append(self, ch: str) -> None:
        if self._discarding:
            return
        if len(self._chars) >= self.max_len:
            self.overflows += 1
            self._discarding = True
            self._chars.clear()
            return
        self._chars.append(ch)

    def reset(self) -> None:
        self._discarding = False
        self._chars.clear()
        self._shift = self._ctrl = 0


def key_events_for(text: str, enter: bool = True) -> list[tuple[int, int]]:
    """(code, value) key events a US-layout scanner sends for ``text`` (tests, simulator)."""
    out: list[tuple[int, int]] = []
    for ch in text:
        if ch == "\x1d":
            out += [(KEY_LEFTCTRL, 1), (KEY_RIGHTBRACE, 1), (KEY_RIGHTBRACE, 0), (KEY_LEFTCTRL, 0)]
            continue
        code, shift = _CHAR_TO_KEY[ch]
        if shift:
            out.append((KEY_LEFTSHIFT, 1))
        out += [(code, 1), (code, 0)]
        if shift:
            out.append((KEY_LEFTSHIFT, 0))
    if enter:
        out += [(KEY_ENTER, 1), (KEY_ENTER, 0)]
    return out


class KeySource(Protocol):
    """An opened key event source: yields (type, code, value) and can be closed."""

    def events(self) -> AsyncIterator[tuple[int, int, int]]: ...

    def close(self) -> None: ...


class _EvdevSource:
    def __init__(self, dev: Any) -> None:
        self._dev = dev

    async def events(self) -> AsyncIterator[tuple[int, int, int]]:
        async for ev in self._dev.async_read_loop():
            yield int(ev.type), int(ev.code), int(ev.value)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._dev.ungrab()
        self._dev.close()


def open_evdev(path: str, grab: bool) -> KeySource:
    """Open (and exclusively grab) an input device; raises DriverUnavailable/PortError."""
    if not sys.platform.startswith("linux"):
        raise DriverUnavailable("HID scanners need Linux evdev")
    try:
        import evdev  # noqa: PLC0415 -- optional extra, imported only when used
    except ImportError as exc:
        raise DriverUnavailable("evdev is not installed (pip install 'edge-agent[hid]')") from exc
    try:
        dev = evdev.InputDevice(path)
        if grab:
            dev.grab()
    except OSError as exc:
        raise PortError(f"cannot open {path}: {exc.strerror or exc}", port=path) from exc
    return _EvdevSource(dev)
