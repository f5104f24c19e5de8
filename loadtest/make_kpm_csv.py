"""Write a valid KPM import file (``bpnt-switch import-kpm``), deterministic from a seed.

    python -m loadtest.make_kpm_csv 1000000 --out var/kpm-1m.csv

Columns ``nik,name,pan,pin_offset,expiry_yymm`` (docs/DATABASE.md).  NIKs are
valid and distinct (region, DDMMYY birth date with +40 for women, serial); PANs
are distinct, Luhn-valid, on BIN 603299 (the demo world uses 603298).  The PIN of
each card is :func:`pin_for` (seed, PAN): recomputable by a test or load
generator, never written unless ``--clear-pins`` asks for a demo ``pin`` column
instead of offsets.  Offsets are computed under the PVK of the switch settings
(``BPNT_PVK_HEX``), as an issuer's personalisation bureau would.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from switch.admin.demo import luhn_complete
from switch.security.keyring import Keyring
from switch.security.pin import pin_offset
from switch.settings import load_settings

BIN = "603299"
REGIONS = ("320101", "327301", "330101", "350101", "357801", "520101", "610101", "730101")
NAMES = ("Siti", "Sri", "Wati", "Nur", "Dewi", "Ani", "Yati", "Rini", "Tuti", "Eka", "Budi",
         "Agus", "Slamet", "Joko", "Asep", "Dedi", "Ujang", "Made", "Wayan", "Ahmad")
SERIALS = 9999
#: (birth day with +40 for women, month, year) combinations used per region.
DAYS = [*range(1, 29), *range(41, 69)]
MONTHS = range(1, 13)
YEARS = range(50, 100)
MAX_ROWS = len(REGIONS) * len(DAYS) * len(MONTHS) * len(YEARS) * SERIALS


def nik_for(index: int) -> str:
    """The ``index``-th NIK: distinct for every index below :data:`MAX_ROWS`."""
    serial, rest = index % SERIALS + 1, index // SERIALS
    rest, year = divmod(rest, len(YEARS))
    rest, month = divmod(rest, len(MONTHS))
    rest, day = divmod(rest, len(DAYS))
    region = REGIONS[rest % len(REGIONS)]
    return f"{region}{DAYS[day]:02d}{MONTHS[month]:02d}{YEARS[year]:02d}{serial:04d}"


def pan_for(index: int, first_serial: int = 1) -> str:
    return luhn_complete(f"{BIN}{first_serial + index:09d}")


def pin_for(seed: int, pan: str) -> str:
    digest = hashlib.sha256(f"{seed}:{pan}".encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 10**6:06d}"


def rows(count: int, *, seed: int, pvk: bytes | None, first_serial: int = 1
         ) -> Iterator[list[str]]:
    """Data rows; ``pvk`` None writes clear PINs (demo ``pin`` column)."""
    for i in range(count):
        pan = pan_for(i, first_serial)
        pin = pin_for(seed, pan)
        secret = pin if pvk is None else pin_offset(pvk, pin, pan)
        expiry = f"{29 + i % 3}{i % 12 + 1:02d}"
        yield [nik_for(i), f"{NAMES[i % len(NAMES)]} {i + 1}", pan, secret, expiry]


def write_csv(path: Path, count: int, *, seed: int = 8583, clear_pins: bool = False,
              first_serial: int = 1) -> None:
    if not 0 <= count <= MAX_ROWS:
        raise ValueError(f"count must be 0..{MAX_ROWS}")
    pvk = None if clear_pins else Keyring.from_settings(load_settings()).pvk
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["nik", "name", "pan", "pin" if clear_pins else "pin_offset",
                         "expiry_yymm"])
        writer.writerows(rows(count, seed=seed, pvk=pvk, first_serial=first_serial))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.make_kpm_csv",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="number of KPM rows")
    parser.add_argument("--out", type=Path, help="file (default var/kpm-COUNT.csv)")
    parser.add_argument("--seed", type=int, default=8583, help="PIN derivation seed")
    parser.add_argument("--first-serial", type=int, default=1,
                        help="first PAN serial (to make files that do not overlap)")
    parser.add_argument("--clear-pins", action="store_true",
                        help="demo only: a clear `pin` column instead of `pin_offset`")
    args = parser.parse_args(argv)
    out = args.out or Path("var") / f"kpm-{args.count}.csv"
    started = time.monotonic()
    write_csv(out, args.count, seed=args.seed, clear_pins=args.clear_pins,
              first_serial=args.first_serial)
    print(f"wrote {args.count} KPM to {out} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
