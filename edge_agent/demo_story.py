"""The demo's narration: what the store and central just did, in plain words.

Pure functions from one live event (the agent's server-sent events) or one MQTT message
on the store's topics (PROTOCOL §3) to one line for a newcomer, or ``None`` for what is
not worth a line. ``edge_agent.demo`` feeds them; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

NAMES: dict[str, str] = {}
"""SKU → product name, filled by the demo from its catalog."""


def _name(sku: Any) -> str:
    return NAMES.get(str(sku), str(sku))


def _items(lines: Any) -> str:
    if not isinstance(lines, list) or not lines:
        return "nothing"
    parts = [f"{line.get('qty', '?')} x {_name(line.get('sku'))}" for line in lines
             if isinstance(line, Mapping)]
    return ", ".join(parts) or "nothing"


def store_event(topic: str, data: Mapping[str, Any]) -> str | None:
    """One line for one of the agent's live events (``/v1/events/stream``)."""
    terminal = data.get("terminal") or data.get("device") or "?"
    if topic == "basket":
        action = data.get("action")
        if action == "add":
            lines = data.get("lines") or []
            last = lines[-1] if lines else {}
            return (f"till {terminal}: scanned {_name(last.get('sku'))} — basket "
                    f"{len(lines)} line(s), {data.get('total')} {data.get('currency', '')}"
                    ).rstrip()
        if action == "checkout":
            return (f"till {terminal}: SALE recorded in the local ledger, total "
                    f"{data.get('total')} (paid at the till; central is told by the outbox)")
        if action == "cancel":
            return f"till {terminal}: basket cancelled"
        return None
    if topic == "session":
        action = data.get("action")
        if action == "close" and data.get("kind") == "receive":
            return (f"back room {terminal}: DELIVERY received: {_items(data.get('lines'))} "
                    "(a receipt fact in the ledger)")
        if action == "close":
            return f"{terminal}: stock count closed: {_items(data.get('lines'))}"
        if action == "open":
            return f"back room {terminal}: receiving started"
        return None
    if topic == "scan_rejected":
        return f"{terminal}: scan refused ({data.get('reason')}): {data.get('message', '')}"
    if topic == "rejected":
        return f"{data.get('device')}: a garbled frame was ignored and counted (never a crash)"
    if topic == "door":
        return (f"door {data.get('device')}: a shopper came "
                f"{'in' if data.get('direction') == 'in' else 'out'}")
    if topic == "device":
        return f"device {data.get('device')}: {data.get('state')}"
    if topic == "customer_arrived":
        return f"a loyalty customer arrived ({data.get('customer')})"
    return None


def mqtt_message(topic: str, payload: bytes) -> str | None:
    """One line for one MQTT message on ``{root}/v1/stores/{store}/…`` (PROTOCOL §3)."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[1] != "v1" or parts[2] != "stores":
        return None
    suffix = "/".join(parts[4:])
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if suffix == "events":
        events = [e for e in body.get("events") or [] if isinstance(e, dict)]
        if not events:
            return None
        kinds = Counter(str(e.get("type")) for e in events)
        what = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
        first, last = events[0].get("seq"), events[-1].get("seq")
        seqs = f"seq {first}" if first == last else f"seq {first}-{last}"
        return f"sync: store → central: a batch of {len(events)} event(s), {seqs} ({what})"
    if suffix == "events/ack":
        return (f"sync: central → store: ack, everything through seq "
                f"{body.get('through_seq')} is safely in central's database")
    if suffix == "commands":
        lines = [f"central → store: command {command.get('cseq')} {_command(command)}"
                 for command in body.get("commands") or [] if isinstance(command, dict)]
        return "\n".join(lines) or None
    if suffix == "commands/ack":
        return f"store → central: commands applied through {body.get('through_cseq')}"
    if suffix == "status":
        return f"store link: the agent says it is {body.get('state', body.get('status'))}"
    return None


def _command(command: Mapping[str, Any]) -> str:
    kind = command.get("type")
    data = command.get("data") or {}
    if kind == "stock.adjust":
        moves = ", ".join(f"{'+' if int(s.get('delta', 0)) >= 0 else ''}{s.get('delta')} "
                          f"{_name(s.get('sku'))}" for s in command.get("stock") or []
                          if isinstance(s, dict))
        return f"stock adjustment ({data.get('reason')}): {moves}"
    if kind == "catalog.upsert":
        return f"catalog update: {len(data.get('items') or [])} item(s)"
    if kind == "reservation.create":
        return f"reserve for web order {data.get('order_ref')}: {_items(data.get('lines'))}"
    return str(kind)
