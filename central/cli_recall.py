"""``edge-central recall issue|lift|list``: recalls by GTIN and lot or serial, over the
operator API (``/v1/recalls``; docs/protocol.md "Recalls")."""

from __future__ import annotations

from pathlib import Path

import click

from central.cli_client import api_options, echo_call, route_command


@click.group()
def recall() -> None:
    """Recall a lot or a serial at the tills: stores refuse it, even offline."""


@recall.command("issue")
@api_options
@click.option("--gtin", required=True, help="GTIN-8/12/13/14 of the item.")
@click.option("--lot", default=None, help="Batch/lot (GS1 AI 10).")
@click.option("--serial", default=None, help="Serial number (GS1 AI 21).")
@click.option("--reason", default="", help="Shown at the till and in alerts.")
@click.option("--recall-id", default=None, help="Default: a new id.")
@click.option("--store", "stores", multiple=True,
              help="Repeatable; default: every store central knows.")
def recall_issue(url: str, token_file: Path | None, *, gtin: str, lot: str | None,
                 serial: str | None, reason: str, recall_id: str | None,
                 stores: tuple[str, ...]) -> None:
    """Issue a recall (recall.add) of GTIN + --lot or GTIN + --serial."""
    if (lot is None) == (serial is None):
        raise click.UsageError("give exactly one of --lot or --serial")
    body: dict[str, object] = {"gtin": gtin, "reason": reason}
    body.update({key: value for key, value in (("lot", lot), ("serial", serial),
                                               ("recall_id", recall_id)) if value is not None})
    if stores:
        body["stores"] = list(stores)
    echo_call(url, token_file, "POST", "/v1/recalls", json=body)


route_command(recall, "lift", "DELETE", "/v1/recalls/{recall_id}",
              "Lift a recall (recall.lift) at every store holding it.", argument="recall_id")
route_command(recall, "list", "GET", "/v1/recalls",
              "Active recalls, the stores holding each, and where each was found at a till.")
