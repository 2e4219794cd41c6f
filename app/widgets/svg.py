"""The coverage widget: the revenue bar in four buckets beside the coverage gauge, as SVG.

The document has no scripts, styles or external references, so it renders the same in an
`<img>` element as on its own. ElementTree builds it, which escapes every text and
attribute value. Each bar segment carries its exact revenue and share in `data-` attributes
for machines, and its text label formatted for people.
"""

import math
import xml.etree.ElementTree as ET
from decimal import Decimal

from app.reports.schemas import BucketRead, CoverageReport
from app.widgets.formatting import compact_money, exact_money, percent

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
WIDTH = 640
HEIGHT = 220

# Bucket order, display name and fill colour. The dashboard's stylesheet uses the same colours.
BUCKETS = (
    ("at_risk", "At risk", "#c62828"),
    ("passive", "Passive", "#e0a100"),
    ("safe", "Safe", "#2e7d32"),
    ("unaccounted", "Unaccounted", "#9e9e9e"),
)
TEXT_COLOUR = "#1f2328"
MUTED_COLOUR = "#57606a"
TRACK_COLOUR = "#e4e7eb"
MET_COLOUR = "#2e7d32"
NOT_MET_COLOUR = "#b45309"

GAUGE_CENTRE = (110.0, 150.0)
GAUGE_RADIUS = 80.0
GAUGE_STROKE = 18
BAR_X = 230.0
BAR_Y = 70.0
BAR_WIDTH = 390.0
BAR_HEIGHT = 40.0


def _element(
    parent: ET.Element, tag: str, text: str | None = None, **attributes: str
) -> ET.Element:
    # Attribute names use `_` where SVG uses `-`, so that they can be keyword arguments.
    names = {name.replace("_", "-"): value for name, value in attributes.items()}
    element = ET.SubElement(parent, tag, names)
    if text is not None:
        element.text = text
    return element


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _arc_point(fraction: float) -> tuple[float, float]:
    """Return the point of the gauge's half circle at `fraction` (0 left, 1 right)."""
    angle = math.pi * (1 - fraction)
    centre_x, centre_y = GAUGE_CENTRE
    return centre_x + GAUGE_RADIUS * math.cos(angle), centre_y - GAUGE_RADIUS * math.sin(angle)


def _arc_path(fraction: float) -> str:
    start_x, start_y = _arc_point(0)
    end_x, end_y = _arc_point(fraction)
    radius = _number(GAUGE_RADIUS)
    return (
        f"M {_number(start_x)} {_number(start_y)} "
        f"A {radius} {radius} 0 0 1 {_number(end_x)} {_number(end_y)}"
    )


def _gauge(svg: ET.Element, report: CoverageReport) -> None:
    coverage = report.coverage or 0.0
    colour = MET_COLOUR if report.meets_target else NOT_MET_COLOUR
    group = _element(svg, "g", id="gauge", data_coverage=str(report.coverage))
    _element(
        group,
        "path",
        d=_arc_path(1),
        fill="none",
        stroke=TRACK_COLOUR,
        stroke_width=str(GAUGE_STROKE),
    )
    if coverage > 0:
        _element(
            group,
            "path",
            d=_arc_path(min(coverage, 1.0)),
            fill="none",
            stroke=colour,
            stroke_width=str(GAUGE_STROKE),
        )

    # The target is a tick across the arc.
    inner = GAUGE_RADIUS - GAUGE_STROKE / 2 - 4
    outer = GAUGE_RADIUS + GAUGE_STROKE / 2 + 4
    angle = math.pi * (1 - report.target)
    centre_x, centre_y = GAUGE_CENTRE
    _element(
        group,
        "line",
        x1=_number(centre_x + inner * math.cos(angle)),
        y1=_number(centre_y - inner * math.sin(angle)),
        x2=_number(centre_x + outer * math.cos(angle)),
        y2=_number(centre_y - outer * math.sin(angle)),
        stroke=TEXT_COLOUR,
        stroke_width="3",
    )

    _element(
        group,
        "text",
        percent(report.coverage),
        x=_number(centre_x),
        y=_number(centre_y - 14),
        text_anchor="middle",
        font_size="30",
        font_weight="bold",
        fill=TEXT_COLOUR,
        id="coverage-value",
    )
    verdict = "met" if report.meets_target else "not met"
    _element(
        group,
        "text",
        f"target {percent(report.target)}, {verdict}",
        x=_number(centre_x),
        y=_number(centre_y + 20),
        text_anchor="middle",
        font_size="13",
        fill=MUTED_COLOUR,
        id="target-value",
    )


def _segment_widths(report: CoverageReport) -> list[float]:
    total = Decimal(report.total_revenue)
    if total == 0:
        return [0.0 for _ in BUCKETS]
    buckets = report.buckets
    return [
        float(Decimal(getattr(buckets, name).revenue) / total * Decimal(str(BAR_WIDTH)))
        for name, _, _ in BUCKETS
    ]


def _bar(svg: ET.Element, report: CoverageReport) -> None:
    group = _element(svg, "g", id="revenue-bar", data_total_revenue=report.total_revenue)
    _element(
        group,
        "rect",
        x=_number(BAR_X),
        y=_number(BAR_Y),
        width=_number(BAR_WIDTH),
        height=_number(BAR_HEIGHT),
        fill=TRACK_COLOUR,
    )
    x = BAR_X
    for (name, label, colour), width in zip(BUCKETS, _segment_widths(report), strict=True):
        bucket: BucketRead = getattr(report.buckets, name)
        segment = _element(
            group,
            "rect",
            x=_number(x),
            y=_number(BAR_Y),
            width=_number(width),
            height=_number(BAR_HEIGHT),
            fill=colour,
            data_bucket=name,
            data_revenue=bucket.revenue,
            data_share=str(bucket.share),
            data_accounts=str(bucket.accounts),
        )
        _element(
            segment,
            "title",
            f"{label}: {exact_money(bucket.revenue, report.currency)}, "
            f"{percent(bucket.share)} of revenue, {bucket.accounts} accounts",
        )
        x += width

    # The legend: two columns of two buckets under the bar, each with its name over its
    # revenue and share.
    for index, (name, label, colour) in enumerate(BUCKETS):
        bucket = getattr(report.buckets, name)
        column_x = BAR_X + (index % 2) * (BAR_WIDTH / 2)
        row_y = BAR_Y + BAR_HEIGHT + 26 + (index // 2) * 44
        _element(
            group,
            "rect",
            x=_number(column_x),
            y=_number(row_y - 11),
            width="12",
            height="12",
            fill=colour,
        )
        text = _element(group, "text", font_size="14", fill=TEXT_COLOUR, data_bucket=name)
        _element(
            text, "tspan", label, x=_number(column_x + 18), y=_number(row_y), font_weight="bold"
        )
        _element(
            text,
            "tspan",
            f"{compact_money(bucket.revenue, report.currency)} · {percent(bucket.share)}",
            x=_number(column_x + 18),
            dy="18",
        )


def render_coverage_svg(report: CoverageReport) -> str:
    """Render the coverage report as a standalone SVG document."""
    total = compact_money(report.total_revenue, report.currency)
    summary = (
        f"Revenue coverage {percent(report.coverage)} of {total} in {report.period.label} "
        f"(target {percent(report.target)}). "
        + ", ".join(
            f"{label} {compact_money(getattr(report.buckets, name).revenue, report.currency)} "
            f"({percent(getattr(report.buckets, name).share)})"
            for name, label, _ in BUCKETS
        )
        + "."
    )
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "role": "img",
            "aria-labelledby": "widget-title",
            "font-family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
            "data-period": report.period.label,
            "data-rollup": report.rollup,
            "data-currency": report.currency,
        },
    )
    _element(svg, "title", summary, id="widget-title")
    _element(svg, "rect", x="0", y="0", width=str(WIDTH), height=str(HEIGHT), fill="#ffffff")
    _element(
        svg,
        "text",
        f"Revenue coverage · {report.period.label}",
        x="20",
        y="30",
        font_size="18",
        font_weight="bold",
        fill=TEXT_COLOUR,
    )
    _element(
        svg,
        "text",
        f"Total {total} · {report.accounts.total} accounts · rule {report.rollup}",
        x=_number(BAR_X),
        y=_number(BAR_Y - 12),
        font_size="13",
        fill=MUTED_COLOUR,
    )
    _gauge(svg, report)
    _bar(svg, report)
    return ET.tostring(svg, encoding="unicode", xml_declaration=False)
