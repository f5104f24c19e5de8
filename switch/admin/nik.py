"""NIK (Nomor Induk Kependudukan) validation: 16 digits, region codes, birth date.

Layout: province (2) + regency (2) + district (2) + DDMMYY birth date, with 40
added to the day for women (6) + serial (4).  There is no check digit.

>>> validate_nik("3273014507900001")   # a woman born 5 July 1990, Bandung
>>> validate_nik("3273013207900001")
'birth date 32/07 is not a date'
"""

from __future__ import annotations

from datetime import date

#: Province codes of Indonesia (BPS), 11 Aceh .. 96 Papua Barat Daya.
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52, 53, 61, 62, 63,
     64, 65, 71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94, 95, 96}
)


def validate_nik(nik: str) -> str | None:
    """``None`` when the NIK is well-formed, else the reason it is not."""
    if len(nik) != 16 or not nik.isdigit():
        return "NIK must be 16 digits"
    if int(nik[:2]) not in PROVINCE_CODES:
        return f"unknown province code {nik[:2]}"
    if nik[2:4] == "00" or nik[4:6] == "00":
        return "regency and district codes must not be 00"
    day, month, year = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if day > 40:
        day -= 40
    try:
        date(2000 + year, month, day)
    except ValueError:
        return f"birth date {nik[6:8]}/{nik[8:10]} is not a date"
    if nik[12:] == "0000":
        return "serial must not be 0000"
    return None


def mask_nik(nik: str) -> str:
    """The first 4 digits (province and regency) and the last 4, the rest ``*``: how a
    NIK is shown (complaints, reports).

    >>> mask_nik("3201014507900001")
    '3201********0001'
    """
    if len(nik) <= 8:
        return "*" * len(nik)
    return nik[:4] + "*" * (len(nik) - 8) + nik[-4:]
