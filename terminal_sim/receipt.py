"""What the EDC prints: rupiah formatting and the purchase receipt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from switch.money import rupiah
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import mask_pan

WIDTH = 32


def pair(left: str, right: str) -> str:
    return f"{left}{right:>{max(1, WIDTH - len(left))}}"


def purchase_receipt(
    *,
    mid: str,
    tid: str,
    when: datetime,
    pan: str,
    batch: str,
    invoice: str,
    stan: str,
    rrn: str,
    approval_code: str,
    basket: Sequence[BasketLine],
    amount_sen: int,
    balance_sen: int | None,
    title: str = "PEMBELIAN BPNT",
    header: str = "E-WARONG BPNT",
) -> list[str]:
    lines = [
        header.center(WIDTH),
        mid.center(WIDTH),
        pair(f"TID {tid}", f"BATCH {batch}"),
        pair(when.strftime("%d/%m/%y"), when.strftime("%H:%M:%S")),
        title.center(WIDTH),
        f"KARTU {mask_pan(pan)}",
        pair(f"INV {invoice}", f"STAN {stan}"),
        pair(f"RRN {rrn}", f"APPR {approval_code}"),
        "-" * WIDTH,
    ]
    for line in basket:
        lines.append(pair(f"{line.item_code} x{line.quantity}", rupiah(line.total_sen)))
    lines += ["-" * WIDTH, pair("TOTAL", rupiah(amount_sen))]
    if balance_sen is not None:
        lines.append(pair("SISA SALDO", rupiah(balance_sen)))
    lines.append("TRANSAKSI BERHASIL".center(WIDTH))
    return lines
