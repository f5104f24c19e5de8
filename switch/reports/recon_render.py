"""The reconciliation report as text: Markdown (:func:`render_md`, money in rupiah),
one flat CSV table (:func:`render_csv`, money in integer sen) and a few console lines
(:func:`summary_lines`).  Formatting only: every number comes from the
:class:`~switch.reports.recon_model.Report`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from switch.clock import WIB
from switch.core.batch import VOID_CODE, Totals
from switch.money import rupiah
from switch.reports.recon_model import Report, SwitchTotals

__all__ = ["CSV_COLUMNS", "csv_rows", "render_csv", "render_md", "summary_lines"]

_REPLAYS = "replays (same key, same content: the stored answer again)"
_REFUSALS = "refusals 94 (same key, different content)"
_DOUBLE_POSTINGS = "double postings (F2): more than one credit for one sale"


# -- Markdown ------------------------------------------------------------------------------

def _wib(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%H:%M:%S")


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _rp(amount_sen: int | None) -> str:
    return "" if amount_sen is None else rupiah(amount_sen)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def _section(title: str, head: Sequence[str], rows: Sequence[Sequence[object]], *,
             intro: str = "", empty: str = "None.", level: str = "##") -> list[str]:
    """A titled table, or ``empty`` when there are no rows."""
    out = ["", f"{level} {title}", ""] + ([intro, ""] if intro else [])
    return out + (_table(head, rows) if rows else [empty])


_TOTALS_HEAD = ["purchases", "purchases Rp", "voids", "voids Rp", "purchase reversals",
                "purchase reversals Rp", "void reversals", "void reversals Rp", "net debits"]


def _totals_cells(t: SwitchTotals) -> list[object]:
    return [t.purchase_count, rupiah(t.purchase_sen), t.void_count, rupiah(t.void_sen),
            t.purchase_reversal_count, rupiah(t.purchase_reversal_sen),
            t.void_reversal_count, rupiah(t.void_reversal_sen), rupiah(t.net_sen)]


def _de63(t: Totals) -> str:
    return (f"{t.purchase_count} / {rupiah(t.purchase_sen)}; "
            f"{t.void_count} / {rupiah(t.void_sen)}")


def render_md(report: Report) -> str:
    """The report as Markdown: the verdict, a summary per e-warong, per terminal, then the
    settlements, differences, voids, reversals (void stands), duplicates and anomalies."""
    w = report.window
    red = report.red_lines
    lines = [f"# Reconciliation {w.day.isoformat()} (WIB)", "",
             f"- Day: {w.describe()}.",
             f"- E-warong: {report.mid or 'all'}.",
             "- Net debits = purchases − voids − purchase reversals + void reversals; it must "
             "equal the e-warong payable account's movement from the day's journal entries.",
             ""]
    if red:
        lines += [f"**RED LINES: {len(red)}** (exit 1)", ""]
        lines += [f"- 🔴 {a.detail}" for a in red]
    else:
        lines.append("**No red line**: no double posting, every payable adds up.")
    lines += _section(
        "E-warongs", ["MID", "name", "terminals", *_TOTALS_HEAD, "payable movement", "agrees"],
        [[e.mid, e.name, len(e.terminals), *_totals_cells(e.totals),
          rupiah(e.payable_movement_sen), _yes(e.payable_agrees)] for e in report.ewarongs],
        empty="Nothing on this day.")
    terminals = [t for e in report.ewarongs for t in e.terminals]
    lines += _section(
        "Terminals",
        ["TID", "MID", *_TOTALS_HEAD, "idle reversals", "settlements", "settled agree"],
        [[t.tid, t.mid, *_totals_cells(t.totals), t.totals.idle_reversal_count,
          len(t.settlements), f"{sum(s.agree for s in t.settlements)} of {len(t.settlements)}"]
         for t in terminals], empty="No terminal was active on this day.")
    lines += _section(
        "Settlements",
        ["RRN", "time WIB", "TID", "batch", "DE 3", "RC", "closed", "terminal DE 63",
         "switch", "agree", "uploads", "differences"],
        [[s.rrn, _wib(s.at), s.tid, s.batch_number, s.processing_code, s.response_code,
          "yes" if s.closed else "no", _de63(s.terminal), _de63(s.switch),
          "yes" if s.agree else "no", s.uploads, s.differences] for s in report.settlements],
        intro="DE 63 as purchases count / amount; voids count / amount. The switch's totals "
              "are those of the terminal's open batch when it settled (HOST_SPEC §4).",
        empty="No settlement on this day.")
    lines += _section(
        "Batch upload differences",
        ["settlement RRN", "TID", "batch", "kind", "DE 3", "RRN", "invoice", "switch",
         "terminal"],
        [[d.settlement_rrn, d.tid, d.batch_number, d.kind, d.processing_code, d.rrn or "",
          d.invoice or "", _rp(d.switch_amount_sen), _rp(d.terminal_amount_sen)]
         for d in report.differences])
    lines += _section(
        "Voids", ["RRN", "time WIB", "TID", "STAN", "invoice", "amount", "purchase RRN",
                  "state"],
        [[v.rrn, _wib(v.at), v.tid, v.stan, v.invoice or "", rupiah(v.amount_sen),
          v.purchase_rrn or "", v.state] for v in report.voids])
    lines += _section(
        "Reversals", ["RRN", "time WIB", "TID", "STAN", "of", "restored", "original RRN",
                      "state"],
        [[r.rrn, _wib(r.at), r.tid, r.stan, "void" if r.of_void else "purchase",
          rupiah(r.restored_sen), r.original_rrn or "", r.state] for r in report.reversals])
    lines += _section(
        "Void stands", ["reversal RRN", "TID", "STAN", "void RRN", "state"],
        [[r.rrn, r.tid, r.stan, r.original_rrn or "", r.state] for r in report.void_stands],
        intro="A void's reversal answered 00 that did not reinstate the purchase: the wallet "
              "no longer covered it, so the void stands (HOST_SPEC §4).")
    lines += _duplicates_md(report)
    lines += _section(
        "Anomalies", ["", "kind", "MID", "TID", "detail"],
        [["🔴 RED" if a.red else "note", a.kind, a.mid or "", a.tid or "", a.detail]
         for a in report.anomalies])
    return "\n".join(lines) + "\n"


def _duplicates_md(report: Report) -> list[str]:
    lines = _section(
        "Duplicates", ["what", "count"],
        [[_DOUBLE_POSTINGS, len(report.double_postings)],
         [_REPLAYS, len(report.replays)], [_REFUSALS, len(report.refusals)]],
        intro="A message sent again under a key the switch had answered (HOST_SPEC §4: "
              "TID, DE 13, STAN) is replayed (same content) or refused 94 (different "
              "content) and audited (duplicate.replay, duplicate.refused); it belongs to "
              "the day the switch answered it. Replays are the protocol working (a "
              "terminal that heard no answer sends again): neither is a red line.")
    lines += _section(
        "Duplicates per e-warong", ["MID", "name", "replays", "94s"],
        [[e.mid, e.name, e.replays, e.refusals] for e in report.ewarongs], level="###")
    lines += _section(
        "Duplicates per terminal", ["TID", "MID", "replays", "94s"],
        [[t.tid, t.mid, t.replays, t.refusals] for e in report.ewarongs for t in e.terminals],
        level="###")
    mid_of = _mids(report)
    lines += _section(
        "Replays and 94s", ["time WIB", "TID", "MID", "STAN", "DE 13", "sent again",
                            "answer", "94's RRN", "original RRN", "original RC"],
        [[_wib(d.at), d.tid, mid_of.get(d.tid, "(unregistered)"), d.stan, d.local_date,
          d.message_class, "94" if d.refused else "replayed", d.rrn or "", d.original_rrn,
          d.original_rc] for d in report.duplicates], level="###")
    return lines


def _mids(report: Report) -> dict[str, str]:
    return {t.tid: t.mid for e in report.ewarongs for t in e.terminals}


# -- CSV ------------------------------------------------------------------------------------

#: The CSV's columns: one flat table, ``section`` says what a row is (those after
#: ``detail`` came with the duplicates' counts, last so earlier columns keep their place).
CSV_COLUMNS = (
    "section", "mid", "tid", "rrn", "ref_rrn", "stan", "invoice", "batch", "code", "rc",
    "kind", "state", "ok", "count", "purchase_count", "purchase_sen", "void_count", "void_sen",
    "purchase_reversal_count", "purchase_reversal_sen", "void_reversal_count",
    "void_reversal_sen", "idle_reversal_count", "net_sen", "payable_sen",
    "terminal_purchase_count", "terminal_purchase_sen", "terminal_void_count",
    "terminal_void_sen", "amount_sen", "switch_amount_sen", "terminal_amount_sen", "at_utc",
    "detail", "replay_count", "refusal_count", "local_date")


def _totals_row(t: SwitchTotals) -> dict[str, object]:
    return {**asdict(t), "net_sen": t.net_sen}


def _de63_row(t: Totals, prefix: str = "") -> dict[str, object]:
    return {f"{prefix}purchase_count": t.purchase_count,
            f"{prefix}purchase_sen": t.purchase_sen,
            f"{prefix}void_count": t.void_count, f"{prefix}void_sen": t.void_sen}


def _at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sen(amount_sen: int | None) -> object:
    return "" if amount_sen is None else amount_sen


def csv_rows(report: Report) -> list[dict[str, object]]:
    """The CSV's rows as dicts (keys among :data:`CSV_COLUMNS`); money in integer sen."""
    w = report.window
    mid_of = _mids(report)
    rows: list[dict[str, object]] = [
        {"section": "window", "mid": report.mid or "", "state": w.day.isoformat(),
         "ok": int(report.ok), "at_utc": _at(w.start), "detail": w.describe()}]
    for e in report.ewarongs:
        rows.append({"section": "ewarong", "mid": e.mid, "ok": int(e.payable_agrees),
                     **_totals_row(e.totals), "payable_sen": e.payable_movement_sen,
                     "detail": e.name, "replay_count": e.replays,
                     "refusal_count": e.refusals})
    for e in report.ewarongs:
        for t in e.terminals:
            rows.append({"section": "terminal", "mid": t.mid, "tid": t.tid,
                         **_totals_row(t.totals), "replay_count": t.replays,
                         "refusal_count": t.refusals})
    for s in report.settlements:
        rows.append({
            "section": "settlement", "mid": mid_of.get(s.tid, ""), "tid": s.tid, "rrn": s.rrn,
            "batch": s.batch_number, "code": s.processing_code, "rc": s.response_code,
            "state": "closed" if s.closed else "open", "ok": int(s.agree),
            **_de63_row(s.switch), **_de63_row(s.terminal, "terminal_"), "at_utc": _at(s.at),
            "detail": f"{s.uploads} uploads, {s.differences} differences"})
    for d in report.differences:
        rows.append({"section": "difference", "mid": mid_of.get(d.tid, ""), "tid": d.tid,
                     "rrn": d.rrn or "", "ref_rrn": d.settlement_rrn,
                     "invoice": d.invoice or "", "batch": d.batch_number,
                     "code": d.processing_code, "kind": d.kind,
                     "switch_amount_sen": _sen(d.switch_amount_sen),
                     "terminal_amount_sen": _sen(d.terminal_amount_sen)})
    for v in report.voids:
        rows.append({"section": "void", "mid": mid_of.get(v.tid, ""), "tid": v.tid,
                     "rrn": v.rrn, "ref_rrn": v.purchase_rrn or "", "stan": v.stan,
                     "invoice": v.invoice or "", "code": VOID_CODE, "state": v.state,
                     "amount_sen": v.amount_sen, "at_utc": _at(v.at)})
    for r in report.reversals:
        rows.append({"section": "void_stands" if r.void_stands else "reversal",
                     "mid": mid_of.get(r.tid, ""), "tid": r.tid, "rrn": r.rrn,
                     "ref_rrn": r.original_rrn or "", "stan": r.stan,
                     "code": r.processing_code, "kind": "void" if r.of_void else "purchase",
                     "state": r.state, "amount_sen": r.restored_sen, "at_utc": _at(r.at)})
    rows += [
        {"section": "duplicates", "kind": "double_posting", "state": "recorded",
         "ok": int(not report.double_postings), "count": len(report.double_postings),
         "detail": "more than one credit for one sale (F2): each is an anomaly row"},
        {"section": "duplicates", "kind": "replay", "state": "recorded",
         "count": len(report.replays), "detail": f"{_REPLAYS}: each is a duplicate row"},
        {"section": "duplicates", "kind": "refusal_94", "state": "recorded",
         "count": len(report.refusals), "detail": f"{_REFUSALS}: each is a duplicate row"}]
    for dup in report.duplicates:
        rows.append({"section": "duplicate", "mid": mid_of.get(dup.tid, ""), "tid": dup.tid,
                     "rrn": dup.rrn if dup.refused else dup.original_rrn,
                     "ref_rrn": dup.original_rrn, "stan": dup.stan,
                     "rc": "94" if dup.refused else dup.original_rc, "kind": dup.kind,
                     "state": dup.message_class, "local_date": dup.local_date,
                     "at_utc": _at(dup.at), "detail": f"original RC {dup.original_rc}"})
    for a in report.anomalies:
        rows.append({"section": "anomaly", "mid": a.mid or "", "tid": a.tid or "",
                     "rrn": a.rrn or "", "kind": a.kind, "state": "red" if a.red else "note",
                     "ok": int(not a.red), "amount_sen": _sen(a.amount_sen),
                     "detail": a.detail})
    return rows


def render_csv(report: Report) -> str:
    """The report as one flat CSV table (:data:`CSV_COLUMNS`, a ``section`` per row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return out.getvalue()


# -- the console --------------------------------------------------------------------------

def summary_lines(report: Report) -> list[str]:
    """A few lines for a console (the ``make run`` demo): the verdict, each e-warong's net
    against its payable, the settlements, void stands, duplicates and every red line."""
    w = report.window
    total = report.totals
    lines = [
        f"reconciliation {w.day.isoformat()} WIB: "
        + ("OK, no red line" if report.ok else f"{len(report.red_lines)} RED LINE(S)"),
        f"  {total.purchase_count} purchases {rupiah(total.purchase_sen)}, "
        f"{total.void_count} voids {rupiah(total.void_sen)}, "
        f"{total.purchase_reversal_count + total.void_reversal_count} reversals, "
        f"net debits {rupiah(total.net_sen)}"]
    for e in report.ewarongs:
        lines.append(f"  {e.mid}: owed {rupiah(e.payable_movement_sen)} "
                     f"{'=' if e.payable_agrees else '!='} net debits "
                     f"{rupiah(e.totals.net_sen)} ({len(e.terminals)} terminals)")
    settled = report.settlements
    if settled:
        lines.append(f"  settlements: {len(settled)}, {sum(s.agree for s in settled)} agreed, "
                     f"{sum(s.closed for s in settled)} closed, "
                     f"{len(report.differences)} batch upload differences")
    if report.void_stands:
        lines.append(f"  void stands: {len(report.void_stands)}")
    if report.duplicates:
        lines.append(f"  duplicates: {len(report.replays)} replays, "
                     f"{len(report.refusals)} refusals 94")
    lines += [f"  RED: {a.detail}" for a in report.red_lines]
    return lines
