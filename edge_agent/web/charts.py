"""The store page's charts, drawn server-side as SVG by pygal (see README, "Pages"): the
terminal's browser only shows a picture, with no chart script to run.

pygal's own tooltip script would load from the web; ``js=[]`` leaves it out, so a chart
never reaches outside the store. Each bar keeps its value in the SVG (``desc.value``),
and the values are also printed on the bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pygal

# pygal (~2 MiB) is imported when the first chart is drawn: a store whose page nobody opens
# never loads it (README, "Footprint on a small terminal")
_STYLE: dict[str, Any] = {
    "background": "transparent", "plot_background": "transparent",
    "foreground": "#1f2933", "foreground_strong": "#1f2933", "foreground_subtle": "#9aa5b1",
    "colors": ("#2563eb", "#9aa5b1", "#16a34a", "#f59e0b"),
    "font_family": "system-ui, sans-serif", "label_font_size": 11, "major_label_font_size": 11,
    "legend_font_size": 12, "value_font_size": 10, "title_font_size": 14,
}


def _open_hours(hours: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Trim the night: from the first to the last hour with any figure (all if none)."""
    busy = [i for i, h in enumerate(hours) if any(h.get(k) for k in keys)]
    if not busy:
        return hours[8:21] if len(hours) >= 21 else hours
    return hours[max(0, busy[0] - 1):busy[-1] + 2]


def _bar(title: str) -> pygal.Bar:
    import pygal  # noqa: PLC0415 - on the first chart, not at start
    from pygal.style import Style  # noqa: PLC0415

    return pygal.Bar(
        js=[], disable_xml_declaration=True, style=Style(**_STYLE), title=title, height=300,
        width=720, legend_at_bottom=True, print_values=True, print_zeroes=False,
        x_label_rotation=0, show_minor_x_labels=True, margin=8, spacing=6,
        truncate_legend=-1, include_x_axis=True,
    )


def sales_chart(figures: dict[str, Any]) -> str:
    """Units sold by hour today, beside the same weekday last week."""
    hours = _open_hours(figures["hours"], "units", "last_week_units")
    chart = _bar("Units sold by hour")
    chart.x_labels = [h["hour"] for h in hours]
    chart.add(f"today ({figures['date']})", [h["units"] or None for h in hours])
    chart.add(f"same day last week ({figures['compared_with']})",
              [h["last_week_units"] or None for h in hours])
    return str(chart.render(is_unicode=True))


def footfall_chart(figures: dict[str, Any]) -> str:
    """Door entries, visits and sales by hour."""
    hours = _open_hours(figures["hours"], "entries", "visits", "sales")
    chart = _bar("Footfall, visits and sales by hour")
    chart.x_labels = [h["hour"] for h in hours]
    chart.add("entries", [h["entries"] or None for h in hours])
    chart.add("visits", [h["visits"] or None for h in hours])
    chart.add("sales", [h["sales"] or None for h in hours])
    return str(chart.render(is_unicode=True))
