"""EPC decoding, HID key decoding, presence tracking, config validation."""

from __future__ import annotations

import pytest
from epcpy import hex_to_tag_encodable
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from drivers.config import DeviceSettings, DoorCounterSettings, SerialScannerSettings
from drivers.epc import PARTITIONS, decode_sgtin96, encode_sgtin96, gs1_check_digit
from drivers.hid import KeyDecoder, key_events_for
from drivers.presence import PresenceTracker

# -- EPC -------------------------------------------------------------------------


def test_sgtin96_tds_example() -> None:
    # GS1 TDS example: urn:epc:tag:sgtin-96:3.0614141.812345.6789
    sg = decode_sgtin96(bytes.fromhex("3074257BF7194E4000001A85"))
    assert sg is not None
    assert (sg.gtin, sg.serial, sg.filter, sg.company_prefix) == (
        "80614141123458",
        "6789",
        3,
        "0614141",
    )


def test_sgtin96_rejects_other_headers_and_bad_partition() -> None:
    assert decode_sgtin96(bytes.fromhex("E28011606000020A1BBB7E02")) is None
    value = int("3074257BF7194E4000001A85", 16) | (0x7 << 82)  # partition 7
    assert decode_sgtin96(value.to_bytes(12, "big")) is None
    assert decode_sgtin96(b"\x30" * 5) is None


@settings(max_examples=80, deadline=None)
@given(
    partition=st.sampled_from(sorted(PARTITIONS)),
    digits=st.text(alphabet="0123456789", min_size=13, max_size=13),
    serial=st.integers(0, (1 << 38) - 1),
    filt=st.integers(0, 7),
)
def test_sgtin96_matches_epcpy(partition: int, digits: str, serial: int, filt: int) -> None:
    gtin = digits + str(gs1_check_digit(digits))
    epc = encode_sgtin96(gtin, serial, PARTITIONS[partition][1], filt)
    sg = decode_sgtin96(epc)
    assert sg is not None
    assert (sg.gtin, sg.serial, sg.filter) == (gtin, str(serial), filt)
    ref = hex_to_tag_encodable(epc.hex().upper())
    assert ref.gtin() == gtin
    assert ref.epc_uri.rsplit(".", 1)[1] == str(serial)


# -- HID -------------------------------------------------------------------------


def decode_all(events: list[tuple[int, int]]) -> list[str]:
    d = KeyDecoder()
    return [s for code, value in events if (s := d.feed(code, value)) is not None]


def test_hid_decodes_us_keycodes_with_shift_and_gs() -> None:
    text = "]C1010950\x1d21Ab-9/{}"
    assert decode_all(key_events_for(text) + key_events_for("42")) == [text, "42"]


def test_hid_synthetic_sequence_layout_independent() -> None:
    # What a US-configured scanner emits for "Az1": shift+a(30), z is code 44, 1 is 2.
    # On an AZERTY machine the OS would print "Qw&"; we decode the codes ourselves.
    seq = [(42, 1), (30, 1), (30, 0), (42, 0), (44, 1), (44, 2), (44, 0), (2, 1), (2, 0), (28, 1)]
    assert decode_all(seq) == ["Az1"]


def test_hid_capslock_unknown_keys_and_overflow() -> None:
    d = KeyDecoder(max_len=5)
    seq = [(58, 1), (58, 0), (30, 1), (42, 1), (30, 1), (42, 0), (183, 1), (28, 1)]
    assert [s for c, v in seq if (s := d.feed(c, v))] == ["Aa"]
    assert d.unknown_keys == 1
    d.feed(58, 1)  # caps lock off again
    out = [
        s for c, v in key_events_for("123456789AB") + key_events_for("xY") if (s := d.feed(c, v))
    ]
    assert d.overflows == 1
    assert out == ["xY"]  # the over-long input is dropped whole, the next scan is intact


# -- presence ---------------------------------------------------------------------


def test_presence_dedup_window_and_bound() -> None:
    t = PresenceTracker(window=1.0, max_keys=2)
    assert t.seen("a", 0.0)
    assert not t.seen("a", 0.5)
    assert t.expire(1.2) == []  # refreshed at 0.5
    assert t.expire(1.5) == ["a"]
    assert t.seen("a", 2.0)
    assert t.seen("b", 2.1)
    assert t.seen("c", 2.2)  # evicts the oldest, "a"
    assert t.expire(2.3) == ["a"]
    assert sorted(t.clear()) == ["b", "c"]


def test_presence_flood_of_distinct_ids_stays_bounded() -> None:
    t = PresenceTracker(window=60.0, max_keys=1000)
    for i in range(20_000):  # would be ~20M comparisons with a per-key min() scan
        t.seen(f"tag{i}", float(i))
    assert len(t) <= 1000
    gone = t.expire(20_000.0)
    assert len(gone) >= 19_000
    assert "tag19999" in t
    assert "tag0" in gone


# -- config -------------------------------------------------------------------------

TA: TypeAdapter[DeviceSettings] = TypeAdapter(DeviceSettings)


def test_config_discriminated_union_and_defaults() -> None:
    s = TA.validate_python({"kind": "serial_scanner", "name": "till-1", "port": "socket://h:1"})
    assert isinstance(s, SerialScannerSettings)
    assert (s.suffix, s.strip_aim, s.enabled) == ("CR", True, True)
    d = TA.validate_python({"kind": "door_counter", "name": "d", "port": "/dev/ttyS0"})
    assert isinstance(d, DoorCounterSettings)
    e = TA.validate_python({"kind": "em4100", "name": "r", "port": "/dev/x"})
    assert (e.baudrate, e.variant) == (9600, "rdm6300")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "serial_scanner", "name": "bad name", "port": "/dev/x"},
        {"kind": "serial_scanner", "name": "a", "port": "/dev/x", "mode": "sale"},
        {"kind": "serial_scanner", "name": "a", "port": "/dev/x", "suffix": "NUL"},
        {"kind": "door_counter", "name": "a", "port": "/dev/x", "line_regex": "(?P<dir>IN)"},
        {"kind": "door_counter", "name": "a", "port": "/dev/x", "line_regex": "("},
        {"kind": "ble_beacon", "name": "a", "ibeacon_uuids": []},
        {"kind": "ble_beacon", "name": "a", "source": "usb0", "eddystone_namespaces": ["00" * 10]},
        {"kind": "ble_beacon", "name": "a", "eddystone_namespaces": ["abc"]},
        {
            "kind": "uhf",
            "name": "a",
            "port": "/dev/x",
            "reconnect_initial_s": 5,
            "reconnect_max_s": 1,
        },
        {"kind": "laser", "name": "a"},
    ],
)
def test_config_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TA.validate_python(bad)


def test_config_models_are_subclassable_and_frozen() -> None:
    class Routed(SerialScannerSettings):
        mode: str = "sale"

    r = Routed(name="t", port="/dev/x", mode="count")
    assert (r.kind, r.mode) == ("serial_scanner", "count")
    with pytest.raises(ValidationError):
        r.port = "/dev/y"  # type: ignore[misc]
