"""sync.wire.canonical_json equals the §2 definition; the §7 digest test vector."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.wire import MAX_SAFE_INT, canonical_json, digest_lines

# Protocol-valid JSON values: no floats, integers within ±(2^53-1), valid Unicode strings
# (no lone surrogates), string keys.
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | _text
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(_text, children, max_size=5),
    max_leaves=30,
)


def _reference(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_text, _values, max_size=8))
def test_canonical_json_is_byte_identical_to_the_definition(obj: dict[str, Any]) -> None:
    assert canonical_json(obj) == _reference(obj)


def test_canonical_json_on_tricky_strings() -> None:
    obj = {"é": "\u2028\u2029", "\x00": "\x1f\x7f", "z": "😀", "a": ['"\\/'], "k": -MAX_SAFE_INT}
    assert canonical_json(obj) == _reference(obj)


def test_digest_test_vector_of_section_7() -> None:
    skus, sha = digest_lines([("a-3", -2, 1), ("B-2", 0, 0), ("A-1", 5, 0)])
    assert skus == 2
    assert sha == "81a2e218fc7bc5b3bcd444382816647a31ebdef3a80eb1d76e876a8bb75194bc"
