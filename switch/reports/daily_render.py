"""The daily reports as one document: Markdown (:func:`render_markdown`) and a printable
HTML page (:func:`render_html`: self-contained, an inline style sheet with print rules,
no script, no external resource).  Formatting only; money in rupiah (the CSV files
keep integer sen)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

from switch.reports.daily_model import ReportTable, heading, shown
from switch.reports.recon_model import day_window

__all__ = ["MAX_PRINTED_ROWS", "render_html", "render_markdown"]

#: Rows of a table in the Markdown and HTML documents (a national not-shopped list may
#: hold many thousands): the rest are in the table's CSV file, and the page says so.
MAX_PRINTED_ROWS = 1000


def _title(day: date, mid: str | None) -> str:
    return f"BPNT daily report {day.isoformat()} (WIB)" + (f", e-warong {mid}" if mid else "")


def render_markdown(tables: Sequence[ReportTable], day: date, mid: str | None) -> str:
    lines = [f"# {_title(day, mid)}", "", f"- Day: {day_window(day).describe()}.",
             f"- E-warong: {mid or 'all'}.",
             f"- Reports: {', '.join(t.name for t in tables)}.", ""]
    return "\n".join(lines) + "\n".join(t.to_markdown(limit=MAX_PRINTED_ROWS)
                                         for t in tables)


_STYLE = """
body { font-family: sans-serif; font-size: 10pt; margin: 1.5em; color: #000; }
h1 { font-size: 15pt; } h2 { font-size: 12pt; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #888; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eee; }
ul.notes { margin: 0.3em 0; padding-left: 1.2em; }
@media print {
  body { margin: 0; font-size: 8pt; }
  section { page-break-inside: avoid; break-inside: avoid-page; }
  section.long { page-break-inside: auto; break-inside: auto; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; break-inside: avoid; }
  th { background: #eee; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
@page { size: A4 landscape; margin: 12mm; }
"""


def _section(table: ReportTable) -> str:
    out = [f'<section class="{"long" if len(table.rows) > 30 else "short"}" '
           f'id="{escape(table.name)}">', f"<h2>{escape(table.title)}</h2>"]
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes)
                   + "</ul>")
    if not table.rows:
        out.append("<p>None.</p>")
    else:
        out.append("<table><thead><tr>" + "".join(f"<th>{escape(heading(c))}</th>"
                                                  for c in table.columns)
                   + "</tr></thead><tbody>")
        for row in table.rows[:MAX_PRINTED_ROWS]:
            cells = "".join(
                f'<td class="n">{escape(shown(c, v))}</td>' if type(v) is int
                else f"<td>{escape(shown(c, v))}</td>"
                for c, v in zip(table.columns, row, strict=True))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody></table>")
        if len(table.rows) > MAX_PRINTED_ROWS:
            out.append(f"<p>... and {len(table.rows) - MAX_PRINTED_ROWS} more rows: every "
                       f"row is in {escape(table.name)}.csv.</p>")
    out.append("</section>")
    return "\n".join(out)


def render_html(tables: Sequence[ReportTable], day: date, mid: str | None) -> str:
    title = escape(_title(day, mid))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{title}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{title}</h1>", f"<p>{escape(day_window(day).describe())}.</p>",
        *(_section(t) for t in tables), "</body>", "</html>", ""])
