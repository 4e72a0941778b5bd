"""``devices list|tail|test``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import click

from drivers import DeviceStateEvent, RejectedInput, open_reader
from drivers.carddata import is_card_data
from edge_agent.cli._base import (
    EXIT_FAILED,
    CliError,
    DaemonUnreachable,
    emit_json,
    json_option,
    note,
    state,
    table,
)
from edge_agent.cli.app import cli
from edge_agent.cli.cmd_core import client_for
from edge_agent.cli.human import event_line, iso, now_iso
from edge_agent.config import Config
from edge_agent.doctor.local import check_device, device_path
from edge_agent.ledger import is_locked
from edge_agent.ledger.lockfile import lock_path

_DIGIT_RUN = re.compile(r"[0-9][0-9 -]{11,30}[0-9]")


def mask(value: Any) -> Any:
    """Mask anything that looks like payment card data (never shown, even to technicians)."""
    if isinstance(value, str):
        if is_card_data(value):
            digits = re.sub(r"\D", "", value)
            return f"[card data masked …{digits[-4:]}]" if len(digits) >= 4 else "[masked]"
        return _DIGIT_RUN.sub(lambda m: "[card data masked]" if is_card_data(m.group(0))
                              else m.group(0), value)
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


@cli.group(name="devices")
def devices_group() -> None:
    """Configured scanners and readers: list them, watch their events, test one."""


def _find(config: Config, name: str) -> Any:
    for device in config.devices:
        if device.name == name:
            return device
    names = ", ".join(d.name for d in config.devices) or "none configured"
    raise CliError(f"no device named {name!r} in the configuration ({names})", code=2)


@devices_group.command(name="list")
@json_option
def devices_list() -> None:
    """Each device: kind, port, state, since, reads, rejected frames, reconnects."""
    st = state()
    config = st.config()
    items: list[dict[str, Any]]
    try:
        data = client_for(config).get("/v1/devices")
        if isinstance(data, dict):
            data = data.get("items", data.get("devices", []))
        items = list(data or [])
        source = "daemon"
    except DaemonUnreachable:
        note("daemon not running — devices from the configuration (port presence checked)")
        items = []
        for d in config.devices:
            check = check_device(d)
            items.append({"name": d.name, "kind": d.kind,
                          "port": device_path(d) or getattr(d, "port", None)
                          or getattr(d, "source", None),
                          "state": "not running", "detail": f"{check.status}: {check.detail}"})
        source = "config"
    if st.json:
        emit_json({"source": source, "items": items})
        return
    table("devices", ["name", "kind", "port", "state", "since", "reads", "rejected",
                      "reconnects", "detail"],
          [(i.get("name"), i.get("kind"), i.get("port"), i.get("state"),
            _since(i.get("since")), i.get("reads"), i.get("frames_rejected"),
            i.get("reconnects"), i.get("detail")) for i in items])


def _since(value: Any) -> str | None:
    return iso(value)


TAIL_TOPICS = ("scan", "scan_rejected", "basket", "session", "lookup", "tag", "device",
               "door", "presence", "rejected", "customer_arrived")
"""Topics of the agent's live stream (``GET /v1/events/stream``)."""


def _topics(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    wanted = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TAIL_TOPICS]
    if unknown or not wanted:
        raise click.BadParameter(f"unknown topic(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {','.join(TAIL_TOPICS)}")
    return ",".join(wanted)


@devices_group.command(name="tail")
@click.argument("name", required=False)
@click.option("--topics", default=",".join(TAIL_TOPICS), show_default=True,
              callback=_topics,
              help="Comma-separated topics: scan, scan_rejected, basket (scan-only tills: "
                   "add, quantity, void, checkout), session (receiving and counts: open, "
                   "add, close), lookup, tag, device, door, presence, rejected, "
                   "customer_arrived.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds, events or not (default: until Ctrl-C).")
@json_option
def devices_tail(name: str | None, topics: str, duration: float | None) -> None:
    """Live decoded events from the running agent (all devices, or NAME); card data
    masked. One line per event (with --json: one JSON object per line)."""
    st = state()
    config = st.config()
    if name is not None:
        _find(config, name)
    client = client_for(config)
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        # Short reads while a deadline runs, so it ends on time even when events flow.
        window = None if deadline is None else max(0.05, min(1.0, deadline - time.monotonic()))
        for event, data in client.stream("/v1/events/stream", params={"topics": topics},
                                          timeout=window):
            if deadline is not None and time.monotonic() >= deadline:
                return
            if name is not None and isinstance(data, dict) and \
                    name not in (data.get("device"), data.get("name"), data.get("terminal")):
                continue
            shown = mask(data)
            if st.json:
                click.echo(json.dumps({"ts": now_iso(), "event": event, "data": shown},
                                      separators=(",", ":"), ensure_ascii=False, default=str))
            else:
                click.echo(event_line(event, shown))


def port_holder(db: Path, port: str | None) -> int | bool:
    """Does the agent holding ``db`` have ``port`` open? Its pid if so, False if it does
    not, True when that cannot be told (no permission to look): then assume it does."""
    if port is None:
        return True
    try:
        pid = int(lock_path(db).read_text().split()[0])
        target = os.path.realpath(port)
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.path.realpath(fd) == target:
                    return pid
    except (OSError, ValueError, IndexError):
        return True
    return False


def _event_dict(event: Any) -> dict[str, Any]:
    data = asdict(event) if is_dataclass(event) and not isinstance(event, type) else {}
    data["type"] = type(event).__name__
    return data


async def _test_device(settings: Any, seconds: float, show: Any) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    errors: list[str] = []
    counts: dict[str, int] = {}

    def emit(event: Any) -> None:
        kind = type(event).__name__
        counts[kind] = counts.get(kind, 0) + 1
        data = mask(_event_dict(event))
        if isinstance(event, DeviceStateEvent) and event.state != "connected":
            errors.append(f"{event.state}: {event.detail}")
        if isinstance(event, RejectedInput):
            errors.append(f"rejected: {event.reason}")
        events.append(data)
        show(data)

    reader = open_reader(settings, emit)
    task = asyncio.create_task(reader.run(), name=f"devices-test[{settings.name}].read")
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    status = reader.status
    return {
        "device": settings.name, "kind": status.kind, "port": status.port,
        "seconds": seconds, "state": status.state, "detail": status.detail,
        "reads": status.reads, "frames_rejected": status.frames_rejected,
        "card_data_rejected": status.card_data_rejected, "reconnects": status.reconnects,
        "events": counts, "errors": errors[:20],
    }


@devices_group.command(name="test")
@click.argument("name")
@click.option("--seconds", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="How long to read.")
@json_option
def devices_test(name: str, seconds: float) -> None:
    """Open NAME directly (agent stopped), read for --seconds, report frames and errors."""
    st = state()
    config = st.config()
    settings = _find(config, name)
    if is_locked(config.database.path):
        holder = port_holder(config.database.path, device_path(settings))
        if holder is not False:
            who = f" (pid {holder})" if isinstance(holder, int) else ""
            raise CliError(
                f"the running agent{who} holds {name}'s port; a second reader would steal "
                "its frames",
                hint=f"watch it live with `edge-agent devices tail {name}`, or stop the agent "
                     "(systemctl stop edge-agent) and test again",
            )
        note(f"the agent is running but does not hold {name}'s port: testing it directly")

    def show(data: dict[str, Any]) -> None:
        if not st.json:
            click.echo(event_line(str(data["type"]),
                                  {k: v for k, v in data.items() if k != "type"}))

    if not st.json:
        click.echo(f"reading {name} ({settings.kind}) for {seconds:g} s — scan or present "
                   "something now")
    result = asyncio.run(_test_device(settings, seconds, show))
    ok = result["state"] == "connected" or result["reads"] > 0
    result["ok"] = ok
    if st.json:
        emit_json(result)
    else:
        click.echo(f"{name}: {result['state']} {result['detail']}".rstrip()
                   + f"; {result['reads']} read(s), {result['frames_rejected']} rejected "
                     f"frame(s), {result['card_data_rejected']} card swipe(s) dropped, "
                     f"{result['reconnects']} reconnect(s)")
        for err in result["errors"]:
            click.echo(f"  {err}")
    if not ok:
        sys.exit(EXIT_FAILED)
