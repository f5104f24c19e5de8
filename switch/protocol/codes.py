"""Response codes and what the EDC shows for each (HOST_SPEC §5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResponseCode:
    code: str
    meaning: str
    display: str


_TABLE = [
    ("00", "approved", "TRANSAKSI BERHASIL"),
    ("05", "do not honour", "TRANSAKSI DITOLAK"),
    ("12", "invalid transaction", "TRANSAKSI TIDAK VALID"),
    ("13", "invalid amount", "NOMINAL TIDAK SESUAI"),
    ("14", "unknown card", "KARTU TIDAK TERDAFTAR"),
    ("25", "original not found", "DATA TRANSAKSI TIDAK DITEMUKAN"),
    ("30", "format error", "FORMAT TRANSAKSI TIDAK SESUAI"),
    ("51", "insufficient balance", "SALDO TIDAK CUKUP"),
    ("54", "expired card", "KARTU KADALUARSA"),
    ("55", "wrong PIN", "PIN SALAH"),
    ("57", "not permitted to the beneficiary", "TRANSAKSI TIDAK DIIZINKAN"),
    ("58", "not permitted to the terminal", "TERMINAL TIDAK TERDAFTAR"),
    ("62", "restricted card", "KARTU DIBLOKIR"),
    ("63", "security violation", "PELANGGARAN KEAMANAN"),
    ("65", "limit exceeded", "BATAS TRANSAKSI TERLAMPAUI"),
    ("75", "PIN tries exceeded", "PIN SALAH 3X, KARTU DIBLOKIR"),
    ("91", "switch or ledger unavailable", "HOST SEDANG OFFLINE"),
    ("94", "duplicate transmission with different content", "TRANSAKSI GANDA"),
    ("95", "settlement totals do not match", "LAKUKAN BATCH UPLOAD"),
    ("96", "system malfunction", "SISTEM SEDANG GANGGUAN"),
    ("ST", "out of stock at this e-warong", "STOK BARANG HABIS"),
]

RESPONSE_CODES: dict[str, ResponseCode] = {c: ResponseCode(c, m, d) for c, m, d in _TABLE}

APPROVED = "00"
DO_NOT_HONOUR = "05"
INVALID_TRANSACTION = "12"
INVALID_AMOUNT = "13"
UNKNOWN_CARD = "14"
ORIGINAL_NOT_FOUND = "25"
FORMAT_ERROR = "30"
INSUFFICIENT_BALANCE = "51"
EXPIRED_CARD = "54"
WRONG_PIN = "55"
NOT_PERMITTED_KPM = "57"
NOT_PERMITTED_TERMINAL = "58"
RESTRICTED_CARD = "62"
SECURITY_VIOLATION = "63"
LIMIT_EXCEEDED = "65"
PIN_TRIES_EXCEEDED = "75"
HOST_UNAVAILABLE = "91"
DUPLICATE_DIFFERENT = "94"
SETTLEMENT_MISMATCH = "95"
SYSTEM_MALFUNCTION = "96"
OUT_OF_STOCK = "ST"

#: Shown when no response arrives within the terminal timeout (HOST_SPEC §5).
TIMEOUT_DISPLAY = "TIME-OUT / TRANSAKSI GAGAL"
#: Shown when the host cannot be reached at all, so nothing was sent.
NO_CONNECTION_DISPLAY = "KONEKSI GAGAL / COBA LAGI"


def display_for(code: str) -> str:
    """What the EDC screen shows for a response code.

    >>> display_for("51")
    'SALDO TIDAK CUKUP'
    >>> display_for("XX")
    'TRANSAKSI DITOLAK (XX)'
    """
    known = RESPONSE_CODES.get(code)
    return known.display if known else f"TRANSAKSI DITOLAK ({code})"
