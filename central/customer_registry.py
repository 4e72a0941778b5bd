"""The customer registry: register, update, withdraw consent, erase; the chain's pepper;
and the ``customers.*`` commands that share consenting customers with the stores.

Every function runs on the writer's connection inside a transaction the caller holds,
except :func:`share`, which issues commands through :meth:`Core.issue` (its own
transactions) after the registry change is committed. Stores receive, per customer, a
minimal profile and keyed hashes of its identifiers (``sync.customer_ids``), never a raw
phone number, card number or tag id, and only while recognition consent is given.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from central.customer_history import customer_value, open_orders
from central.errors import InvalidCommandError
from central.storage import Connection
from sync.customer_ids import PEPPER_BYTES, IdentifierError, keyed_hash, normalise
from sync.wire import SKU_RE, canonical_json, now_ts

if TYPE_CHECKING:
    from central.core import Core, Publish

COMMAND_TYPES: Final = frozenset({
    "customers.key", "customers.key.retire", "customers.upsert", "customers.remove",
})
CHUNK_BYTES: Final = 60_000
MAX_LIST: Final = 10


class RegistryError(InvalidCommandError):
    """A registration the registry refuses; ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- the pepper ------------------------------------------------------------------------------
def current_key(conn: Connection) -> tuple[str, bytes]:
    """The pepper stores hash under now; created at first use. Never logged."""
    rows = conn.execute("SELECT key_id, key FROM customer_keys WHERE state = 'current'")
    if rows:
        return str(rows[0][0]), _unb64(str(rows[0][1]))
    key_id = f"k{len(conn.execute('SELECT 1 FROM customer_keys')) + 1}-{uuid.uuid4().hex[:8]}"
    key = secrets.token_bytes(PEPPER_BYTES)
    conn.execute("INSERT INTO customer_keys (key_id, key, created, state) VALUES (?, ?, ?, ?)",
                 (key_id, b64(key), now_ts(), "current"))
    return key_id, key


def rotate_key(conn: Connection) -> tuple[str | None, str]:
    """A new current pepper; the previous one is retired (stores drop it after re-hashing).
    Returns (previous key id, new key id)."""
    rows = conn.execute("SELECT key_id FROM customer_keys WHERE state = 'current'")
    previous = str(rows[0][0]) if rows else None
    conn.execute("UPDATE customer_keys SET state = 'retired' WHERE state = 'current'")
    return previous, current_key(conn)[0]


# -- registration ----------------------------------------------------------------------------
def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit \
            or not value.isprintable():
        raise RegistryError("invalid_field", f"{what} must be 1 to {limit} printable characters")
    return value.strip()


def _skus(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(
            isinstance(s, str) and SKU_RE.fullmatch(s) for s in value):
        raise RegistryError("invalid_field", f"{what} must be a list of SKUs")
    return list(dict.fromkeys(value))[:MAX_LIST]


def _identifiers(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    region = body.get("region")
    out: list[tuple[str, str]] = []
    try:
        if body.get("phone") is not None:
            out.append(("phone", normalise("phone", str(body["phone"]),
                                           str(region) if region else None)))
        for kind, field in (("card", "cards"), ("tag", "tags")):
            values = body.get(field) or []
            if not isinstance(values, list) or len(values) > 8:
                raise RegistryError("invalid_field", f"{field} must be a list of at most 8")
            out.extend((kind, normalise(kind, str(v))) for v in values)
    except IdentifierError as exc:
        raise RegistryError(exc.code, str(exc)) from None
    return out


def _context(body: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    context = dict(old)
    loyalty = body.get("loyalty")
    if loyalty is not None:
        if (not isinstance(loyalty, Mapping) or type(loyalty.get("points", 0)) is not int
                or not isinstance(loyalty.get("tier", ""), str)):
            raise RegistryError("invalid_field", "loyalty is {tier: text, points: integer}")
        context["loyalty"] = {"tier": str(loyalty.get("tier", ""))[:32],
                              "points": int(loyalty.get("points", 0))}
    for field in ("wishlist", "recently_viewed"):
        if body.get(field) is not None:
            context[field] = _skus(body[field], field)
    return context


def _consent(value: Any, old: Mapping[str, Any]) -> dict[str, bool]:
    consent = {"recognition": False, "marketing": False, **old}
    if value is not None:
        if not isinstance(value, Mapping) or not all(
                isinstance(v, bool) for v in value.values()):
            raise RegistryError("invalid_field", "consent is {recognition: bool, marketing: bool}")
        consent.update({k: bool(value[k]) for k in ("recognition", "marketing") if k in value})
    return consent


def register(conn: Connection, body: Mapping[str, Any]) -> str:
    """Create a customer (or replace one registered under the same ``ref``)."""
    ref = _text(body.get("ref") or f"C-{uuid.uuid4().hex[:12]}", "ref", 128)
    name = _text(body.get("name"), "name", 64)
    idents = _identifiers(body)
    if not idents:
        raise RegistryError("no_identifier", "give a phone number, a card or a tag")
    consent = _consent(body.get("consent"), {})
    context = _context(body, {})
    _claim(conn, ref, idents)
    now = now_ts()
    conn.execute(
        "INSERT INTO customers (ref, name, consent, state, context, created, updated) VALUES "
        "(?, ?, ?, 'active', ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET name = excluded.name, "
        "consent = excluded.consent, state = 'active', context = excluded.context, "
        "updated = excluded.updated",
        (ref, name, orjson.dumps(consent).decode(), orjson.dumps(context).decode(), now, now))
    conn.execute("DELETE FROM customer_identifiers WHERE ref = ?", (ref,))
    conn.executemany("INSERT INTO customer_identifiers (kind, value, ref) VALUES (?, ?, ?)",
                     [(kind, value, ref) for kind, value in idents])
    return ref


def _claim(conn: Connection, ref: str, idents: Sequence[tuple[str, str]]) -> None:
    for kind, value in idents:
        rows = conn.execute("SELECT ref FROM customer_identifiers WHERE kind = ? AND value = ?",
                            (kind, value))
        if rows and rows[0][0] != ref:
            raise RegistryError("identifier_taken",
                                f"this {kind} is registered to another customer", 409)


def customer_row(conn: Connection, ref: str) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    rows = conn.execute("SELECT name, consent, context, state FROM customers WHERE ref = ?",
                        (ref,))
    if not rows:
        raise RegistryError("unknown_customer", f"no customer {ref!r}", 404)
    name, consent, context, state = rows[0]
    return str(name), orjson.loads(consent), orjson.loads(context), str(state)


def update(conn: Connection, ref: str, body: Mapping[str, Any]) -> None:
    """Change name, identifiers, consent or online context; omitted fields are kept."""
    name, consent, context, _ = customer_row(conn, ref)
    if body.get("name") is not None:
        name = _text(body["name"], "name", 64)
    consent = _consent(body.get("consent"), consent)
    context = _context(body, context)
    if any(body.get(f) is not None for f in ("phone", "cards", "tags")):
        idents = _identifiers(body)
        _claim(conn, ref, idents)
        conn.execute("DELETE FROM customer_identifiers WHERE ref = ?", (ref,))
        conn.executemany("INSERT INTO customer_identifiers (kind, value, ref) VALUES (?, ?, ?)",
                         [(kind, value, ref) for kind, value in idents])
    conn.execute("UPDATE customers SET name = ?, consent = ?, context = ?, updated = ? "
                 "WHERE ref = ?", (name, orjson.dumps(consent).decode(),
                                   orjson.dumps(context).decode(), now_ts(), ref))


def withdraw(conn: Connection, ref: str) -> None:
    """Recognition consent withdrawn: the customer stays in the registry, not in stores."""
    _, consent, _, _ = customer_row(conn, ref)
    consent["recognition"] = False
    conn.execute("UPDATE customers SET consent = ?, updated = ? WHERE ref = ?",
                 (orjson.dumps(consent).decode(), now_ts(), ref))


def erase(conn: Connection, ref: str) -> None:
    """Right to erasure: the customer, their identifiers and their history."""
    customer_row(conn, ref)
    for table in ("customer_identifiers", "customer_history", "customers"):
        conn.execute(f"DELETE FROM {table} WHERE ref = ?", (ref,))


def shared(conn: Connection, ref: str) -> bool:
    """Whether stores may hold this customer: known, active, recognition consent."""
    rows = conn.execute("SELECT consent, state FROM customers WHERE ref = ?", (ref,))
    return bool(rows) and rows[0][1] == "active" and \
        orjson.loads(rows[0][0]).get("recognition") is True


# -- what stores get --------------------------------------------------------------------------
def profile(conn: Connection, ref: str) -> dict[str, Any]:
    """The minimal profile a store caches and shows at the till (no identifier in it)."""
    name, consent, context, _ = customer_row(conn, ref)
    orders = open_orders(conn, ref)
    reservations: list[dict[str, Any]] = []
    if orders:
        marks = ", ".join("?" * len(orders))
        reservations = [{"store": s, "reservation_id": r, "order_ref": o} for s, r, o in
                        conn.execute(
                            "SELECT store, reservation_id, order_ref FROM reservations WHERE "
                            f"state = 'open' AND order_ref IN ({marks}) ORDER BY store",
                            [x["order_ref"] for x in orders])][:MAX_LIST]
    value = customer_value(conn, ref)
    return {"ref": ref, "name": name, "consent": consent, "as_of": now_ts(),
            "loyalty": context.get("loyalty"), "wishlist": context.get("wishlist", []),
            "recently_viewed": context.get("recently_viewed", []),
            "open_orders": orders, "reservations": reservations,
            "value": {k: value[k] for k in ("index", "channels", "recency_days", "spend",
                                            "currency")}}


def _entry(conn: Connection, ref: str, key: bytes) -> dict[str, Any]:
    idents = conn.execute("SELECT kind, value FROM customer_identifiers WHERE ref = ? "
                          "ORDER BY kind, value", (ref,))
    return {"ref": ref, "profile": profile(conn, ref),
            "identifiers": [{"kind": str(k), "hmac": b64(keyed_hash(key, str(k), str(v)))}
                            for k, v in idents][:16]}


def _chunks(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = len(canonical_json(entry)) + 1
        if chunk and size + n > CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        yield chunk


def share_specs(conn: Connection, refs: Sequence[str] | None,
                retire: str | None = None) -> tuple[str, bytes, list[dict[str, Any]]]:
    """Commands that bring a store up to date for ``refs`` (None: every customer): an
    upsert for those shared, a remove for the others; a key retire last if asked."""
    key_id, key = current_key(conn)
    if refs is None:
        refs = [str(r[0]) for r in conn.execute("SELECT ref FROM customers ORDER BY ref")]
    keep = [ref for ref in refs if shared(conn, ref)]
    drop = [ref for ref in refs if ref not in set(keep)]
    specs: list[dict[str, Any]] = [
        {"type": "customers.upsert", "data": {"key_id": key_id, "customers": chunk}}
        for chunk in _chunks([_entry(conn, ref, key) for ref in keep])]
    specs += [{"type": "customers.remove", "data": {"refs": drop[i:i + 1000]}}
              for i in range(0, len(drop), 1000)]
    if retire:
        specs.append({"type": "customers.key.retire", "data": {"key_id": retire}})
    return key_id, key, specs


def compact_acked(conn: Connection) -> int:
    """Reduce every ``customers.*`` command a store has acknowledged to a summary in the
    central's command log: the pepper, profiles and hashes are then only where they are
    needed (the registry, ``customer_keys``, the stores). A store restored to an older
    watermark gets the summaries (it flags them) and, after its resync, everything again."""
    done = {str(s): int(c) for s, c in conn.execute(
        "SELECT store, through_cseq FROM customer_compacted")}
    changed = 0
    for store, acked in conn.execute(
            "SELECT store, acked_cseq FROM stores WHERE acked_cseq IS NOT NULL"):
        start, through = done.get(str(store), 0), int(acked)
        if through <= start:
            continue
        marks = ", ".join("?" * len(COMMAND_TYPES))
        for cseq, body in conn.execute(
                "SELECT cseq, body FROM commands WHERE store = ? AND cseq > ? AND cseq <= ? "
                f"AND type IN ({marks})", (store, start, through, *sorted(COMMAND_TYPES))):
            command = orjson.loads(body)
            data = command.get("data") or {}
            command["data"] = {"summary": True, "key_id": data.get("key_id"),
                               "customers": len(data.get("customers") or data.get("refs")
                                                or [])}
            conn.execute("UPDATE commands SET body = ? WHERE store = ? AND cseq = ?",
                         (canonical_json(command).decode(), store, cseq))
            changed += 1
        conn.execute("INSERT INTO customer_compacted (store, through_cseq) VALUES (?, ?) "
                     "ON CONFLICT (store) DO UPDATE SET through_cseq = excluded.through_cseq",
                     (store, through))
    return changed


def share(core: Core, refs: Sequence[str] | None, stores: Sequence[str] | None = None,
          retire: str | None = None) -> tuple[dict[str, Any], list[Publish]]:
    """Issue the commands of :func:`share_specs` to each store this central owns (or to
    ``stores``), the pepper first where the store does not hold the current one."""
    conn = core.conn
    conn.begin_write()
    try:
        compact_acked(conn)
        key_id, key, specs = share_specs(conn, refs, retire)
        targets = stores if stores is not None else [
            str(r[0]) for r in conn.execute("SELECT store FROM stores ORDER BY store")]
        held = {str(s): str(k) for s, k in conn.execute(
            "SELECT store, key_id FROM customer_store_keys")}
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    out: list[Publish] = []
    issued: dict[str, int] = {}
    if not specs:
        return {"stores": issued, "key_id": key_id}, out
    for store in targets:
        if not core.owns(store):
            continue
        todo = list(specs)
        if held.get(store) != key_id or refs is None:
            todo.insert(0, {"type": "customers.key", "data": {"key_id": key_id, "key": b64(key)}})
        commands, publishes = core.issue(store, todo)
        out.extend(publishes)
        issued[store] = len(commands)
        conn.begin_write()
        try:
            conn.execute("INSERT INTO customer_store_keys (store, key_id) VALUES (?, ?) ON "
                         "CONFLICT (store) DO UPDATE SET key_id = excluded.key_id",
                         (store, key_id))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return {"stores": issued, "key_id": key_id}, out


def check_command(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The central's check of a ``customers.*`` command given to ``Core.issue``."""
    need = {"customers.key": ("key_id", "key"), "customers.key.retire": ("key_id",),
            "customers.upsert": ("key_id", "customers"), "customers.remove": ("refs",)}[kind]
    missing = [field for field in need if not data.get(field)]
    if missing:
        raise InvalidCommandError(f"{kind} needs {', '.join(missing)}")
    return dict(data)
