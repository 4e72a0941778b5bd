"""Keyed hashes of customer identifiers, the one scheme central and stores share. Pure.

A store never receives a raw phone number, loyalty card number or tag id. Central sends,
for each identifier a consenting customer registered, ``HMAC-SHA256(pepper, kind ":"
normalised value)`` in lower-case hex, where the *pepper* is a chain-wide secret key that
reaches stores only over the authenticated command channel (``customers.key``, see
docs/protocol.md). Without the pepper the hashes cannot be brute-forced, unlike the plain
SHA-256 of a 40-bit EM4100 id. The ``kind`` prefix keeps a phone number and a card number
made of the same digits apart.

Normalisation (both sides must agree exactly):
- ``phone``: E.164 (``+33612345678``) by ``phonenumbers``; a national number needs the
  default region (ISO 3166 alpha-2) of the store or of the registration;
- ``card``: a loyalty card barcode, blanks removed, upper-case;
- ``tag``: a loyalty tag read, as :func:`normalise_tag` (the visitor engine's form).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final, Literal

from sync.errors import SyncError

IdentifierKind = Literal["phone", "card", "tag"]
KINDS: Final = ("phone", "card", "tag")
PEPPER_BYTES: Final = 32
HMAC_HEX_RE: Final = re.compile(r"[0-9a-f]{64}")
KEY_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CARD_RE: Final = re.compile(r"[A-Z0-9._/-]{4,64}")
TAG_RE: Final = re.compile(r"[0-9A-Z:._-]{4,64}")


class IdentifierError(SyncError, ValueError):
    """An identifier that cannot be normalised. Its message never repeats the input."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalise_phone(text: str, region: str | None) -> str:
    """E.164 form of a typed phone number; ``region`` is the default for national forms."""
    if len(text) > 40:
        raise IdentifierError("invalid_phone", "a phone number has at most 40 characters")
    # imported on the first phone number, not at start (~40 ms of CPU, ~2 MiB)
    import phonenumbers  # noqa: PLC0415

    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException as exc:
        raise IdentifierError(
            "invalid_phone",
            "not a phone number" + ("" if region else
                                    " (give it in international form, +…, or set the region)"),
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise IdentifierError("invalid_phone", "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_card(text: str) -> str:
    value = "".join(text.split()).upper()
    if CARD_RE.fullmatch(value) is None:
        raise IdentifierError("invalid_card", "a loyalty card number is 4 to 64 letters/digits")
    return value


def normalise_tag(text: str) -> str:
    value = text.strip().upper()
    if TAG_RE.fullmatch(value) is None:
        raise IdentifierError("invalid_tag", "a tag id is 4 to 64 hex digits or letters")
    return value


def normalise(kind: str, text: str, region: str | None = None) -> str:
    if kind == "phone":
        return normalise_phone(text, region)
    if kind == "card":
        return normalise_card(text)
    if kind == "tag":
        return normalise_tag(text)
    raise IdentifierError("invalid_kind", f"identifier kind must be one of {', '.join(KINDS)}")


def keyed_hash(pepper: bytes, kind: str, normalised: str) -> bytes:
    """The 32-byte HMAC-SHA256 of an already normalised identifier."""
    return hmac.new(pepper, f"{kind}:{normalised}".encode(), hashlib.sha256).digest()


def keyed_hex(pepper: bytes, kind: str, normalised: str) -> str:
    return keyed_hash(pepper, kind, normalised).hex()
