"""The signed session cookie and the bearer header, as both pages use them."""

from __future__ import annotations

import hashlib
import hmac

from pagekit.session import SessionCookie, bearer

COOKIE = SessionCookie("kit_session", b"kit test label")


def test_the_value_is_an_hmac_of_the_label_never_the_token() -> None:
    value = COOKIE.value("s3cret-token")
    assert value == hmac.new(b"s3cret-token", b"kit test label", hashlib.sha256).hexdigest()
    assert "s3cret" not in value
    assert COOKIE.value(b"s3cret-token") == value
    assert SessionCookie("other", b"another label").value("s3cret-token") != value


def test_only_the_exact_value_under_its_own_name_is_valid() -> None:
    good = COOKIE.value("t")
    assert COOKIE.valid(f"a=1; kit_session={good}", good)
    assert COOKIE.valid(f"kit_session={good}".encode("latin-1"), good)
    for header in ("", "garbage;;; ==", 'kit_session="\\x00"', "kit_session=t",
                   f"other_session={good}", f"kit_session={good}x"):
        assert not COOKIE.valid(header, good), header
    assert COOKIE.read("kit_session=abc") == "abc"
    assert COOKIE.read("nothing=here") is None


def test_set_and_clear_headers_keep_the_cookie_from_scripts_and_other_sites() -> None:
    plain = COOKIE.set_header("v", secure=False)
    assert plain == "kit_session=v; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict"
    assert COOKIE.set_header("v", secure=True) == plain + "; Secure"
    assert COOKIE.clear_header() == "kit_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def test_bearer_takes_only_a_bearer_scheme_with_a_token() -> None:
    assert bearer("Bearer abc ") == b"abc"
    assert bearer("bearer abc") == b"abc"
    for header in (None, "", "Basic abc", "Bearer", "Bearer   ", "abc"):
        assert bearer(header) is None, header
