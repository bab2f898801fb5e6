"""The evidence report as PDF: the alert, its figures, plots of the readings, the case."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from reportlab.graphics.charts.legends import LineLegend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.doctemplate import LayoutError

from api.evidence import PLOTS, CaseRecord, photo_name, rfc3339
from api.photo_check import thumbnail

#: One colour per phase (and the neutral), as the web pages draw them.
PHASE_COLOURS = {
    "1": colors.HexColor("#b45309"),
    "2": colors.HexColor("#1f2937"),
    "3": colors.HexColor("#6b7280"),
    "n": colors.HexColor("#2563eb"),
}
#: Width of the text column on A4 with 18 mm margins.
WIDTH = A4[0] - 36 * mm
#: Longest text of one table cell before it is cut (evidence values, free text).
CELL_CHARS = 600


#: Free text (comments, findings, notes) may be Chinese. A CJK TrueType font of the machine
#: is embedded (subset) so that every reader shows it as written (Debian's
#: fonts-wqy-microhei); without one, Adobe's Song is named but not embedded, which readers
#: with Asian font packs show and others show as boxes.
CJK_FONT_FILES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
EMBEDDED_FONT = "MeterguardCJK"
FALLBACK_FONT = "STSong-Light"


def text_font() -> str:
    """Register and return the font free text is set in (embedded where the machine can)."""
    registered = pdfmetrics.getRegisteredFontNames()
    for name in (EMBEDDED_FONT, FALLBACK_FONT):
        if name in registered:
            return name
    for path in CJK_FONT_FILES:
        if path.is_file():
            pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, str(path), subfontIndex=0))
            return EMBEDDED_FONT
    pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_FONT))
    return FALLBACK_FONT


def _styles() -> dict[str, ParagraphStyle]:
    font = text_font()
    sheet = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("title", parent=sheet["Title"]),
        "h2": ParagraphStyle("h2", parent=sheet["Heading2"]),
        "body": ParagraphStyle("body", parent=sheet["BodyText"], fontName=font),
        "small": ParagraphStyle(
            "small", parent=sheet["BodyText"], fontName=font, fontSize=8, leading=10
        ),
    }


def _escape(text: str) -> str:
    """Make free text safe for reportlab's paragraph markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(value: Any, style: ParagraphStyle) -> Paragraph:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS] + " ..."
    return Paragraph(_escape(text), style)


def _table(rows: list[list[Any]], style: ParagraphStyle, widths: list[float]) -> Table:
    cells = [[_cell(v, style) for v in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e5e7eb")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _plot(record: CaseRecord, title: str, quantities: tuple[str, ...]) -> Drawing | None:
    """Return one plot of the quantities against hours from onset, None if none measured."""
    ts = record.plotted.get("ts", [])
    onset = record.alert.start
    lines: list[list[tuple[float, float]]] = []
    names: list[str] = []
    for q in quantities:
        values = record.plotted.get(q)
        if values is None:
            continue
        points = [
            ((t - onset) / 3600.0, v) for t, v in zip(ts, values, strict=True) if not math.isnan(v)
        ]
        if len(points) >= 2:
            lines.append(points)
            names.append(q)
    if not lines:
        return None
    drawing = Drawing(WIDTH, 62 * mm)
    plot = LinePlot()
    # The stubs type positions as int; points are whole enough.
    plot.x, plot.y = round(14 * mm), round(12 * mm)
    plot.width, plot.height = round(WIDTH - 40 * mm), round(42 * mm)
    plot.data = lines
    for k, name in enumerate(names):
        plot.lines[k].strokeColor = PHASE_COLOURS[name[-1]]
        plot.lines[k].strokeWidth = 0.8
    plot.xValueAxis.labelTextFormat = "%.0f h"
    plot.yValueAxis.labelTextFormat = "%.4g"
    drawing.add(plot)
    drawing.add(String(14 * mm, 58 * mm, f"{title}, hours from onset", fontSize=9))
    legend = LineLegend()
    legend.x, legend.y = round(WIDTH - 22 * mm), round(50 * mm)
    legend.fontSize = 8
    legend.colorNamePairs = [(PHASE_COLOURS[n[-1]], n) for n in names]
    drawing.add(legend)
    return drawing


def _photo_rows(record: CaseRecord, style: ParagraphStyle) -> list[Flowable]:
    """Return a row per photo: a thumbnail (JPEG, PNG, WebP) beside who, when, where, hash."""
    rows: list[Flowable] = []
    for photo in record.photos:
        data = record.photo_bytes.get(photo.sha256)
        where = (
            f"{photo.latitude:.6f}, {photo.longitude:.6f}"
            if photo.latitude is not None and photo.longitude is not None
            else "not given"
        )
        facts: list[list[Any]] = [
            ["photo", f"{photo.id} ({photo.file_name or 'unnamed'}, {photo.media_type})"],
            ["work order", photo.work_order_id],
            ["uploaded", f"{rfc3339(photo.uploaded_at)} by {photo.uploaded_by}"],
            ["taken (camera)", photo.taken_at or "not recorded"],
            ["where (phone)", where],
            ["file", photo_name(photo) if data is not None else "missing from the photo store"],
            ["SHA-256", photo.sha256],
        ]
        side = 40 * mm
        picture: Flowable | str = "no thumbnail"
        if data is not None and photo.width is not None:
            picture = Image(
                io.BytesIO(thumbnail(data)), kind="proportional", width=side, height=side
            )
        text = _table(facts, style, [24 * mm, WIDTH - side - 28 * mm])
        row = Table([[picture, text]], colWidths=[side + 4 * mm, WIDTH - side - 4 * mm])
        row.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        rows += [KeepTogether(row), Spacer(1, 2 * mm)]
    return rows


def render_pdf(
    record: CaseRecord, created_by: str, created_at: float, files: dict[str, str]
) -> bytes:
    """Return the report as PDF bytes; `files` names the pack's other files and digests."""
    st = _styles()
    alert = record.alert
    story: list[Flowable] = [
        Paragraph(_escape(f"Evidence report: alert {alert.id}"), st["title"]),
        Paragraph(
            _escape(f"Made {rfc3339(created_at)} by {created_by} with meterguard."), st["body"]
        ),
        Spacer(1, 4 * mm),
        Paragraph("The alert", st["h2"]),
    ]
    meter = record.meter
    facts: list[list[Any]] = [
        ["field", "value"],
        ["meter", alert.meter],
        ["transformer", (meter.transformer if meter else None) or "-"],
        ["kind", alert.kind.value],
        ["severity", alert.severity.value],
        ["phase", alert.phase if alert.phase is not None else "meter"],
        ["summary", alert.summary],
        ["onset (data time)", rfc3339(alert.start)],
        ["raised (data time)", rfc3339(alert.raised) if alert.raised else "-"],
        ["ended (data time)", rfc3339(alert.end) if alert.end else "open"],
        ["confidence", f"{alert.confidence:.3f}"],
        ["estimated energy lost", f"{alert.estimated_kwh_lost:.3f} kWh"],
    ]
    story.append(_table(facts, st["small"], [45 * mm, WIDTH - 45 * mm]))
    story += [Spacer(1, 3 * mm), Paragraph("Detector figures", st["h2"])]
    evidence = [["figure", "value"], *([k, v] for k, v in sorted(alert.evidence.items()))]
    story.append(_table(evidence, st["small"], [45 * mm, WIDTH - 45 * mm]))
    start, end = record.window
    story += [
        Paragraph("Readings", st["h2"]),
        Paragraph(
            _escape(
                f"{len(record.readings.get('ts', []))} readings from {rfc3339(start)} to "
                f"{rfc3339(end)} in readings.csv; the plots average them into at most 600 "
                "points each."
            ),
            st["body"],
        ),
    ]
    for title, quantities in PLOTS.items():
        drawing = _plot(record, title, quantities)
        if drawing is not None:
            story.append(drawing)
    story.append(Paragraph("The case", st["h2"]))
    timeline: list[list[Any]] = [["time", "who", "what"]]
    timeline += [
        [rfc3339(e.at), e.actor, f"{e.action} {json.dumps(e.detail, ensure_ascii=False)}"]
        for e in record.audit
    ]
    story.append(_table(timeline, st["small"], [36 * mm, 28 * mm, WIDTH - 64 * mm]))
    for order in record.work_orders:
        rows: list[list[Any]] = [["work order " + str(order.id), ""]]
        rows += [
            ["assignee", order.assignee or "-"],
            ["status", order.status.value],
            ["instructions", order.instructions],
            ["outcome", order.outcome.value if order.outcome else "-"],
            ["outcome note", order.outcome_note or "-"],
            ["method", order.outcome_method or "-"],
            ["recovered", f"{order.recovered_kwh} kWh" if order.recovered_kwh else "-"],
        ]
        rows += [[f"checklist: {k}", str(v)] for k, v in order.checklist.model_dump().items()]
        story += [Spacer(1, 3 * mm), _table(rows, st["small"], [50 * mm, WIDTH - 50 * mm])]
    for comment in record.comments:
        line = f"{rfc3339(comment.at)} {comment.author}: {comment.text}"
        story.append(Paragraph(_escape(line), st["small"]))
    if record.photos:
        story += [Paragraph("Photos", st["h2"]), *_photo_rows(record, st["small"])]
    listing = [["file", "SHA-256"], *([n, d] for n, d in sorted(files.items()))]
    story += [
        Paragraph("Files of the pack", st["h2"]),
        KeepTogether(_table(listing, st["small"], [30 * mm, WIDTH - 30 * mm])),
    ]
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"Evidence report {alert.id}",
        author=created_by,
    )
    try:
        doc.build(story)
    except LayoutError as exc:  # a cell too tall for a page: say which case, not a 500 alone
        raise ValueError(f"the report of {alert.id} does not fit the page: {exc}") from exc
    return out.getvalue()
