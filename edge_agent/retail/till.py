"""What the till checks on a resolved item beyond the catalog: expiry (GS1 AI 17) and
best-before (AI 15) dates in the store's time zone, and recalls by GTIN + lot or serial.

Pure rules over a :class:`~drivers.barcode.BarcodeInfo`; the recall lookup is given as
a function.  A refusal is a :class:`TillRefused` (an ``OperationError`` with a stable
code: ``expired``, ``best_before_passed``, ``recalled``) that carries the event the
service records *after* the refused write rolled back, so every blocked attempt is in
the ledger and reaches central:

* ``recall.blocked`` (event type): ``recall_id``, ``gtin``, ``lot``/``serial``, ``sku``,
  ``source`` — it tells central which store still has that lot on its shelves;
* ``alert`` kind ``expired_blocked``: ``gtin``, ``sku``, ``date_kind``
  (``expiry``/``best_before``), ``date``, ``today``, ``source``.

Policy ``warn`` sells and returns a notice (``expired``/``best_before_passed``);
``markdown_days`` adds an ``expiry_markdown`` notice that many days before the date.
Recalls are never a matter of policy: a recalled lot is always refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from drivers.barcode import BarcodeInfo, RcnLayout, region_code
from edge_agent.config import StoreSection
from edge_agent.errors import OperationError
from edge_agent.till_config import CUSTOM_REGION, ExpiryPolicy
from sync.recalls import RECALL_BLOCKED

if TYPE_CHECKING:
    from drivers.barcode import RcnRegion

Purpose = Literal["sale", "lookup", "receive", "count"]
RecallFinder = Callable[[str, str | None, str | None], dict[str, Any] | None]


class TillRefused(OperationError):
    """The till refuses this item; ``event`` is recorded even though the write failed."""

    def __init__(self, code: str, message: str, *, event: tuple[str, dict[str, Any]],
                 status: int = 422) -> None:
        super().__init__(code, message, status=status)
        self.event = event

    def prefixed(self, prefix: str) -> TillRefused:
        return TillRefused(self.code, f"{prefix}: {self}", event=self.event, status=self.status)


@dataclass(frozen=True, slots=True)
class TillRules:
    """How this store reads codes and which dates/recalls it enforces."""

    region: RcnRegion | str | None = None
    """biip's region, or its code (``"se"``): a code until the first read loads biip."""
    layouts: tuple[RcnLayout, ...] = ()
    timezone: str = "UTC"
    expiry_policy: ExpiryPolicy = "block"
    best_before_policy: ExpiryPolicy = "block"
    markdown_days: int = 0
    clock: Callable[[], dt.datetime] | None = field(default=None, compare=False)
    """An aware "now" (tests); default the system clock."""

    @classmethod
    def from_store(cls, store: StoreSection) -> TillRules:
        region = None if store.rcn_region == CUSTOM_REGION else region_code(store.rcn_region)
        return cls(region=region, layouts=tuple(e.layout() for e in store.rcn_layouts),
                   timezone=store.timezone, expiry_policy=store.expiry_policy,
                   best_before_policy=store.best_before_policy or store.expiry_policy,
                   markdown_days=store.markdown_days)

    def local_today(self) -> dt.date:
        """Today's date in the store's time zone (a date passes at the store's midnight)."""
        now = self.clock() if self.clock is not None else dt.datetime.now(dt.UTC)
        return now.astimezone(ZoneInfo(self.timezone)).date()


def check_item(info: BarcodeInfo, sku: str, rules: TillRules, purpose: Purpose,
               find: RecallFinder) -> list[dict[str, Any]]:
    """Raise :class:`TillRefused` if the item may not pass; else the notices to show."""
    notices: list[dict[str, Any]] = []
    gtin = info.gtin
    if gtin is not None and purpose in ("sale", "receive", "lookup"):
        recall = find(gtin, info.batch, info.serial)
        if recall is not None:
            if purpose == "lookup":
                notices.append({"code": "recalled", **recall})
            else:
                data = {**recall, "sku": sku, "source": purpose}
                which = f"lot {recall['lot']}" if "lot" in recall else \
                    f"serial {recall['serial']}"
                why = f" ({recall['reason']})" if recall.get("reason") else ""
                raise TillRefused("recalled", f"recalled: GTIN {gtin} {which} is under recall "
                                  f"{recall['recall_id']}{why}; do not sell, set it aside",
                                  event=(RECALL_BLOCKED, data))
    if purpose not in ("sale", "lookup"):
        return notices
    today = rules.local_today()
    for date_kind, date, policy, code in (
            ("expiry", info.expiry, rules.expiry_policy, "expired"),
            ("best_before", info.best_before, rules.best_before_policy, "best_before_passed")):
        if date is None or policy == "allow":
            continue
        if date < today:
            what = "expiry date" if date_kind == "expiry" else "best-before date"
            if policy == "block" and purpose == "sale":
                raise TillRefused(code, f"{code}: the {what} {date.isoformat()} has passed "
                                  f"(today is {today.isoformat()} in {rules.timezone})",
                                  event=("alert", {
                                      "kind": "expired_blocked", "gtin": gtin, "sku": sku,
                                      "date_kind": date_kind, "date": date.isoformat(),
                                      "today": today.isoformat(), "source": purpose}))
            notices.append({"code": code, "date": date.isoformat()})
        elif rules.markdown_days and (date - today).days <= rules.markdown_days:
            notices.append({"code": "expiry_markdown", "date": date.isoformat(),
                            "days_left": (date - today).days})
    return notices
