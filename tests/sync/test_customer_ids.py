"""The shared keyed-hash scheme of customer identifiers (sync.customer_ids)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.customer_ids import IdentifierError, keyed_hash, normalise

PEPPER = bytes(range(32))


@given(st.integers(min_value=0, max_value=9_999_999),
       st.sampled_from(["0{a} {b}", "+33 {a} {b}", "0033{a}{b}", "0{a}.{b}", "(0){a}-{b}"]))
def test_every_way_of_typing_a_number_gives_one_e164(rest: int, shape: str) -> None:
    digits = f"61{rest:07d}"  # a valid French mobile range
    typed = shape.format(a=digits[:3], b=digits[3:])
    assert normalise("phone", typed, "FR") == f"+33{digits}"


def test_national_numbers_need_a_region_and_errors_never_echo_the_input() -> None:
    assert normalise("phone", "+44 20 7946 0958", None) == "+442079460958"
    assert normalise("phone", "020 7946 0958", "GB") == "+442079460958"
    for typed, region in (("06 12 34 56 78", None), ("0612", "FR"), ("x" * 50, "FR")):
        with pytest.raises(IdentifierError) as info:
            normalise("phone", typed, region)
        assert info.value.code == "invalid_phone"
        assert typed not in str(info.value)


def test_the_keyed_hash_is_hmac_sha256_with_the_kind_as_domain() -> None:
    assert keyed_hash(PEPPER, "tag", "0A1B2C3D4E") == hmac.new(
        PEPPER, b"tag:0A1B2C3D4E", hashlib.sha256).digest()
    assert keyed_hash(PEPPER, "card", "123456") != keyed_hash(PEPPER, "phone", "123456")
    assert keyed_hash(PEPPER, "tag", "0A1B2C3D4E") != keyed_hash(bytes(32), "tag",
                                                                  "0A1B2C3D4E")
    assert normalise("tag", " 0a1b2c3d4e ") == "0A1B2C3D4E"
    assert normalise("card", "lc 0042 17") == "LC004217"
    with pytest.raises(IdentifierError):
        normalise("email", "a@b.c")
