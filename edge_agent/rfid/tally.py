"""The RFID counting rule, pure: an open count's distinct EPCs in memory, and what its
close turns them into (per-SKU counted quantities and the ``count`` fact).

**The rule.** A count has a cut-off, the moment it closes (``counted_at``). The store's
expected quantity of a SKU is its on-hand at that cut-off (read in the same ledger
transaction that records the count, so every sale committed before it is in it and none
after). The counted quantity is::

    counted(sku) = |{ e read during the count : sku(e) = sku, e not sold at the cut-off }|
                 + |{ e last located in a zone outside the count : sku(e) = sku,
                      e not sold at the cut-off, e not read during the count }|

"Sold" means recorded by a sale with that EPC and not brought back by a return since.

**Why sales during the count are not double-counted.** Take any item of the SKU that is
in the counted zones at the cut-off: it is not sold, and the readers covered the zones,
so it was read: it is in the first set. Take an item sold before the cut-off: whether it
was read before its sale, after it (still on the counter), or never, it is sold at the
cut-off, so it is in neither set, and the expected quantity has lost it too through the
sale's own stock delta. Hence ``counted`` is exactly the unsold items present at the
cut-off, and ``counted - expected`` brings the projection to it. A return before the
cut-off puts the item back in both: it is not sold any more, and the return's delta added
it to the expected quantity. (An item sold *without* its EPC while being counted cannot be
told apart; tagged items should be sold with their tag, which is what
:mod:`edge_agent.rfid` records.)

**Zones.** A count covers one or more zones; a store count covers all of them (``zones``
is None). Items of the SKU last located by an inventory reader in a zone the count does
not cover keep counting (second set), so counting the shop floor alone does not zero the
stock held in the back room. An EPC de-duplicates across zones: read in two zones, it is
one item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.retail import ops

__all__ = ["LINES_PER_FACT", "CountSession", "Tally", "count_facts", "tally"]

LINES_PER_FACT = 400
"""A count line is under 100 bytes of canonical JSON: 400 lines stay far below 64 KiB."""
MAX_UNKNOWN_IN_FACT = 100


class CountSession:
    """One open count: distinct EPCs read in its zones, each with its GTIN and zone.

    ``read`` is the hot path (every tag sighting of an inventory reader): one dict probe
    for a tag already read. The (gtin, zone) pairs are shared tuples, so an EPC costs one
    dict slot and its key string (see ``bench/rfid.py`` for 100k EPCs).
    """

    __slots__ = ("_epcs", "_pairs", "count_id", "max_epcs", "non_sgtin_reads", "opened_at",
                 "overflow", "reads", "zones")

    def __init__(self, count_id: str, zones: frozenset[str] | None, opened_at: float,
                 max_epcs: int = 1_000_000) -> None:
        self.count_id = count_id
        self.zones = zones  # None: the whole store (every inventory zone)
        self.opened_at = opened_at
        self.max_epcs = max_epcs
        self.reads = 0
        self.non_sgtin_reads = 0
        self.overflow = 0
        self._epcs: dict[str, tuple[str, str]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}

    def covers(self, zone: str) -> bool:
        return self.zones is None or zone in self.zones

    def read(self, epc: str, gtin: str | None, zone: str) -> bool:
        """Take one sighting; True if this EPC is new to the count. A tag that is not an
        SGTIN (``gtin`` None: a loyalty card, a foreign tag) is counted, never kept."""
        self.reads += 1
        if gtin is None:
            self.non_sgtin_reads += 1
            return False
        epcs = self._epcs
        if epc in epcs:
            return False
        if len(epcs) >= self.max_epcs:
            self.overflow += 1
            return False
        key = (gtin, zone)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = key
        epcs[epc] = pair
        return True

    @property
    def distinct(self) -> int:
        return len(self._epcs)

    @property
    def epcs(self) -> Mapping[str, tuple[str, str]]:
        return self._epcs

    def per_gtin(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for gtin, _zone in self._epcs.values():
            out[gtin] = out.get(gtin, 0) + 1
        return out


@dataclass(slots=True)
class Tally:
    """What a count's reads come to at its cut-off."""

    counted: dict[str, int] = field(default_factory=dict)
    """SKU -> counted quantity (both sets of the rule)."""
    read_unsold: dict[str, int] = field(default_factory=dict)
    elsewhere: dict[str, int] = field(default_factory=dict)
    unknown_gtins: dict[str, int] = field(default_factory=dict)
    """GTIN -> distinct unsold tags whose GTIN is not in the catalog (reported, no stock)."""
    sold_excluded: int = 0
    """Distinct EPCs read during the count but sold at the cut-off."""


def tally(
    epcs: Mapping[str, tuple[str, str]],
    sold: Iterable[str],
    sku_of: Mapping[str, str | None],
    located: Iterable[tuple[str, str, str]] = (),
    zones: frozenset[str] | None = None,
) -> Tally:
    """Apply the rule (module docstring).

    ``epcs``: EPC -> (gtin, zone) read during the count; ``sold``: EPCs sold at the
    cut-off (any superset restricted to the read EPCs and the located ones is fine);
    ``sku_of``: GTIN -> SKU (None: not in the catalog); ``located``: (epc, sku, zone) of
    the unsold EPCs the store last located, for the second set; ``zones``: the count's
    zones (None: every zone).
    """
    sold_set = sold if isinstance(sold, set | frozenset) else set(sold)
    out = Tally()
    for epc, (gtin, _zone) in epcs.items():
        if epc in sold_set:
            out.sold_excluded += 1
            continue
        sku = sku_of.get(gtin)
        if sku is None:
            out.unknown_gtins[gtin] = out.unknown_gtins.get(gtin, 0) + 1
            continue
        out.read_unsold[sku] = out.read_unsold.get(sku, 0) + 1
    here: set[str] = set()
    for epc, sku, zone in located:
        if epc in epcs or epc in sold_set:
            continue
        if zones is None or zone in zones:
            here.add(sku)  # located in the counted zones and not read now: gone
        else:
            out.elsewhere[sku] = out.elsewhere.get(sku, 0) + 1
    for sku in sorted(set(out.read_unsold) | here):
        out.counted[sku] = out.read_unsold.get(sku, 0) + out.elsewhere.get(sku, 0)
    return out


def count_facts(
    count_id: str,
    result: Tally,
    expected: Mapping[str, int],
    *,
    counted_at: str,
    zones: Sequence[str] | None,
    session: CountSession,
) -> list[ops.Fact]:
    """The ``count`` facts (PROTOCOL §4.2) with the RFID extension fields (docs/protocol.md,
    "RFID counts and exit alerts"): one line per SKU, at most :data:`LINES_PER_FACT` lines
    per fact (``part``/``parts`` number them), so that a store-wide count stays within the
    protocol's 64 KiB per event. Every part has the same ``count_id`` and cut-off."""
    items = sorted(result.counted.items())
    chunks = [items[i:i + LINES_PER_FACT] for i in range(0, len(items), LINES_PER_FACT)] or [[]]
    unknown = sorted(result.unknown_gtins.items())
    facts = []
    for part, chunk in enumerate(chunks, start=1):
        base = ops.count_fact(count_id, chunk, expected)
        data: dict[str, Any] = {
            **base.data,
            "source": "rfid",
            "counted_at": counted_at,
            "scope": "zones" if zones is not None else "store",
            "tags": session.distinct,
            "reads": session.reads,
            "sold_excluded": result.sold_excluded,
        }
        if zones is not None:
            data["zones"] = sorted(zones)
        if len(chunks) > 1:
            data["part"], data["parts"] = part, len(chunks)
        if part == 1:
            data["unknown_gtins"] = [{"gtin": g, "tags": n}
                                     for g, n in unknown[:MAX_UNKNOWN_IN_FACT]]
            data["unknown_gtin_count"] = len(unknown)
        facts.append(ops.Fact("count", data, base.stock))
    return facts
