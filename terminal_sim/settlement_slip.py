"""The end-of-day slip the EDC prints on settlement, as Indonesian bank EDCs print
it: merchant, TID/MID, batch, date and time, the SETTLEMENT header, sale and void
counts and totals, the grand total, and the outcome."""

from __future__ import annotations

from datetime import datetime

from switch.money import rupiah
from terminal_sim.batch import Totals
from terminal_sim.receipt import WIDTH, pair

SUCCESS = "SETTLEMENT BERHASIL"


def _column(label: str, count: str) -> str:
    return f"{label:<10}{count:>4}"


def settlement_slip(
    *,
    merchant_name: str,
    mid: str,
    tid: str,
    batch: str,
    when: datetime,
    totals: Totals,
    approved: bool,
    display: str,
    rc: str | None,
    uploaded: bool,
    upload_count: int = 0,
) -> list[str]:
    """The slip lines; ``display`` is what the screen showed when not approved."""
    rule = "-" * WIDTH
    lines = [
        merchant_name.center(WIDTH),
        pair("MID", mid),
        pair(f"TID {tid}", f"BATCH {batch}"),
        pair(when.strftime("%d/%m/%y"), when.strftime("%H:%M:%S")),
        rule,
        "SETTLEMENT".center(WIDTH),
        rule,
        pair(_column("TIPE", "JML"), "TOTAL"),
        pair(_column("PEMBELIAN", f"{totals.purchase_count:03d}"), rupiah(totals.purchase_sen)),
        pair(_column("VOID", f"{totals.void_count:03d}"), rupiah(-totals.void_sen)),
        rule,
        pair("GRAND TOTAL", rupiah(totals.net_sen)),
        rule,
        pair("BATCH UPLOAD", f"YA ({upload_count} TRX)" if uploaded else "TIDAK"),
    ]
    if approved:
        lines.append(SUCCESS.center(WIDTH))
    else:
        lines.append("SETTLEMENT GAGAL".center(WIDTH))
        lines.append((f"{display} (RC {rc})" if rc else display).center(WIDTH))
    return lines
