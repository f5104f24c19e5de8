"""Money is integer sen (HOST_SPEC §2: IDR with 2 implied decimals); this formats it,
and names the kinds of transfer (the ledger's postings and the schema's CHECK agree on
them by importing them from here)."""

from __future__ import annotations

#: What a transfer can be (``transfers.kind``).
#: A void (HOST_SPEC §4) pays a purchase back from the e-warong to the wallet; a reversal
#: undoes a purchase or a void.
TRANSFER_KINDS = ("allocation", "purchase", "void", "reversal")


def rupiah(amount_sen: int) -> str:
    """Indonesian format: dot for thousands, comma for sen.

    >>> rupiah(13_000_000), rupiah(150), rupiah(-5_000)
    ('Rp 130.000', 'Rp 1,50', '-Rp 50')
    """
    assert type(amount_sen) is int, "money is integer sen"
    sign = "-" if amount_sen < 0 else ""
    rupiahs, sen = divmod(abs(amount_sen), 100)
    text = f"{rupiahs:,}".replace(",", ".")
    return f"{sign}Rp {text}" + (f",{sen:02d}" if sen else "")
