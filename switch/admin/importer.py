"""Bulk KPM import: one CSV of families and their KKS cards (``bpnt-switch import-kpm``).

Format (docs/DATABASE.md): UTF-8 CSV with a header row naming the columns, in any
order::

    nik,name,pan,pin_offset,expiry_yymm[,psn]

- ``nik``: 16 digits, checked by :func:`switch.admin.nik.validate_nik`;
- ``name``: 1-80 characters;
- ``pan``: 16-19 digits with a valid Luhn check digit (kept only as an HMAC token
  and a masked PAN, like :meth:`Registry.issue_card`);
- ``pin_offset``: the IBM 3624 PIN offset from issuance (4-12 digits).  Real
  issuance files carry offsets, never PINs.  For demo files only, a ``pin``
  column (clear PIN) is accepted instead and turned into the offset here;
- ``expiry_yymm``: YYMM; ``psn``: 2 digits, default ``01``.

Every row is validated first (format, NIK, duplicates within the file), then the
valid rows are staged in a temporary table (PostgreSQL: ``COPY``; SQLite:
batched ``executemany``), checked against the database (NIK or PAN already
registered), and inserted set-based: wallet accounts, KPM, cards.  One
transaction: any bad row (by default) means nothing is imported, and a report
lists every bad row with its line number and reason.  ``skip_invalid=True``
imports the good rows and reports the rest.  Each row is a new active KPM with
an active card and an empty wallet; money arrives with ``allocate``.

One audit record per import (``kpm.import``, with the file's SHA-256 and the
counts), appended last so the audit head is locked only for the commit.  The
import does not take the switch's writer lock (it touches no existing row), so
a running switch on PostgreSQL keeps authorizing meanwhile.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.orm import Session

from switch.admin.nik import validate_nik
from switch.audit import chain
from switch.clock import Clock, SystemClock
from switch.host.keyring import Keyring
from switch.ledger.database import Database
from switch.protocol.message import mask_pan
from switch.security.keys import pan_token
from switch.security.pin import pin_offset

REQUIRED_COLUMNS = ("nik", "name", "pan", "expiry_yymm")
#: Rows per executemany batch (SQLite) and per reported progress step.
BATCH_ROWS = 50_000
#: Problems kept in the report (a wholly wrong file should not fill memory).
MAX_PROBLEMS = 1000
STAGE = "kpm_import_stage"
STAGE_COLUMNS = ("line", "nik", "name", "wallet_ref", "pan_token", "pan_masked", "psn",
                 "expiry_yymm", "pin_offset")


class ImportFormatError(ValueError):
    """The file as a whole is unusable (no header, missing columns)."""


class _RolledBack(Exception):
    """Raised inside the import transaction to roll it back whole."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, line: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(RowProblem(line, reason))

    def summary(self) -> str:
        head = (f"{self.rows} rows read, {self.imported} KPM imported, "
                f"{self.problem_count} rows rejected in {self.seconds:.1f} s")
        lines = [f"line {p.line}: {p.reason}" for p in sorted(self.problems,
                                                            key=lambda p: p.line)]
        more = self.problem_count - len(lines)
        return "\n  ".join([head, *lines]) + (f"\n  ... and {more} more" if more else "")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _row_problem(row: dict[str, str]) -> str | None:
    """Why a row is unusable on its own, or ``None``."""
    if reason := validate_nik(row["nik"]):
        return f"NIK {row['nik'][:6]}...: {reason}"
    if not 1 <= len(row["name"]) <= 80:
        return "name must be 1-80 characters"
    pan = row["pan"]
    if not (16 <= len(pan) <= 19 and pan.isdigit()):
        return "PAN must be 16-19 digits"
    if not luhn_ok(pan):
        return f"PAN {mask_pan(pan)} fails the Luhn check"
    secret = row.get("pin_offset") or row.get("pin") or ""
    if not (4 <= len(secret) <= 12 and secret.isdigit()):
        return ("pin_offset" if "pin_offset" in row else "pin") + " must be 4-12 digits"
    expiry = row["expiry_yymm"]
    if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
        return "expiry_yymm must be YYMM"
    psn = row.get("psn") or "01"
    if not (len(psn) == 2 and psn.isdigit()):
        return "psn must be 2 digits"
    return None


def _read(path: Path, keys: Keyring, report: ImportReport) -> Iterator[tuple[Any, ...]]:
    """Stage tuples (:data:`STAGE_COLUMNS`) of the rows that are valid on their own
    and not repeated in the file; the rest go to ``report``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ImportFormatError(f"{path.name}: header lacks {', '.join(missing)}")
        if ("pin_offset" in header) == ("pin" in header):
            raise ImportFormatError(f"{path.name}: need exactly one of pin_offset, pin")
        demo_pins = "pin" in header
        first_nik: dict[str, int] = {}
        first_pan: dict[str, int] = {}
        for values in reader:
            line = reader.line_num
            if not values or values == [""]:
                continue
            report.rows += 1
            if len(values) != len(header):
                report.add(line, f"{len(values)} fields, the header has {len(header)}")
                continue
            row = {name: value.strip() for name, value in zip(header, values, strict=True)}
            if reason := _row_problem(row):
                report.add(line, reason)
                continue
            nik, pan = row["nik"], row["pan"]
            if nik in first_nik:
                report.add(line, f"duplicate NIK (first on line {first_nik[nik]})")
                continue
            if pan in first_pan:
                report.add(line, f"duplicate PAN {mask_pan(pan)} "
                                 f"(first on line {first_pan[pan]})")
                continue
            first_nik[nik], first_pan[pan] = line, line
            offset = pin_offset(keys.pvk, row["pin"], pan) if demo_pins else row["pin_offset"]
            yield (line, nik, row["name"], f"NIK:{nik}", pan_token(keys.pan_token_key, pan),
                   mask_pan(pan), row.get("psn") or "01", row["expiry_yymm"], offset)


def _stage(session: Session, rows: Iterator[tuple[Any, ...]]) -> None:
    """Create the temporary stage table and load ``rows`` into it."""
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    session.execute(text(f"DROP TABLE IF EXISTS {STAGE}"))
    session.execute(text(
        f"CREATE TEMPORARY TABLE {STAGE} (line INTEGER PRIMARY KEY, nik VARCHAR(16), "
        "name VARCHAR(80), wallet_ref VARCHAR(40), pan_token VARCHAR(64), "
        "pan_masked VARCHAR(19), psn VARCHAR(2), expiry_yymm VARCHAR(4), "
        "pin_offset VARCHAR(12))" + (" ON COMMIT DROP" if postgres else "")))
    if postgres:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        session.execute(text(f"ANALYZE {STAGE}"))
        return
    insert = text(f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES "
                  f"({', '.join(':' + c for c in STAGE_COLUMNS)})")
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(dict(zip(STAGE_COLUMNS, row, strict=True)))
        if len(batch) >= BATCH_ROWS:
            session.execute(insert, batch)
            batch = []
    if batch:
        session.execute(insert, batch)


#: Rows already in the database, by (reason, query returning stage lines).
_CONFLICTS = (
    ("NIK already registered",
     f"SELECT s.line FROM {STAGE} s JOIN kpm k ON k.nik = s.nik"),
    ("NIK already has a wallet account",
     f"SELECT s.line FROM {STAGE} s JOIN accounts a "
     "ON a.kind = 'kpm_wallet' AND a.owner_ref = s.wallet_ref"),
    ("PAN already issued",
     f"SELECT s.line FROM {STAGE} s JOIN cards c ON c.pan_token = s.pan_token"),
)


def _check_against_database(session: Session, report: ImportReport) -> list[int]:
    bad: set[int] = set()
    for reason, query in _CONFLICTS:
        for line in session.scalars(text(query)):
            if line not in bad:
                bad.add(line)
                report.add(line, reason)
    return sorted(bad)


def _insert(session: Session, now: Any) -> tuple[int, int | None, int | None]:
    """Wallets, KPM and cards from the stage; returns (count, first and last KPM id)."""
    stamp = bindparam("now", value=now, type_=DateTime(timezone=True))
    session.execute(text(
        "INSERT INTO accounts (kind, owner_ref, balance_sen, created_at) "
        f"SELECT 'kpm_wallet', wallet_ref, 0, :now FROM {STAGE} ORDER BY line"
    ).bindparams(stamp))
    session.execute(text(
        "INSERT INTO kpm (nik, name, status, wallet_account_id, created_at) "
        f"SELECT s.nik, s.name, 'active', a.id, :now FROM {STAGE} s JOIN accounts a "
        "ON a.kind = 'kpm_wallet' AND a.owner_ref = s.wallet_ref ORDER BY s.line"
    ).bindparams(stamp))
    session.execute(text(
        "INSERT INTO cards (pan_token, pan_masked, kpm_id, psn, expiry_yymm, status, "
        "pin_offset, wrong_pin_count) "
        "SELECT s.pan_token, s.pan_masked, k.id, s.psn, s.expiry_yymm, 'active', "
        f"s.pin_offset, 0 FROM {STAGE} s JOIN kpm k ON k.nik = s.nik ORDER BY s.line"))
    count, first, last = session.execute(text(
        f"SELECT count(*), min(k.id), max(k.id) FROM {STAGE} s JOIN kpm k ON k.nik = s.nik"
    )).one()
    return int(count), first, last


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_kpm(db: Database, keys: Keyring, path: Path, *, actor: str,
               skip_invalid: bool = False, clock: Clock | None = None) -> ImportReport:
    """Import ``path`` (module docstring); ``report.imported`` is 0 unless it committed."""
    clock = clock or SystemClock()
    started = time.monotonic()
    report = ImportReport()
    try:
        with db.transaction(exclusive=False) as session:
            report.imported = _load(session, keys, path, report, actor=actor,
                                    skip_invalid=skip_invalid, clock=clock)
    except _RolledBack:
        report.imported = 0
    report.seconds = time.monotonic() - started
    return report


def _load(session: Session, keys: Keyring, path: Path, report: ImportReport, *, actor: str,
          skip_invalid: bool, clock: Clock) -> int:
    _stage(session, _read(path, keys, report))
    bad_lines = _check_against_database(session, report)
    if report.problem_count and not skip_invalid:
        raise _RolledBack
    for start in range(0, len(bad_lines), BATCH_ROWS):
        chunk = bad_lines[start:start + BATCH_ROWS]
        session.execute(text(f"DELETE FROM {STAGE} WHERE line IN :lines").bindparams(
            bindparam("lines", value=chunk, expanding=True)))
    count, first_id, last_id = _insert(session, clock.now())
    if session.connection().dialect.name != "postgresql":
        session.execute(text(f"DROP TABLE {STAGE}"))
    if count:
        chain.append(session, keys.audit_key, at=clock.now(), actor=actor,
                     action="kpm.import", subject=path.name[:80],
                     detail={"sha256": _file_sha256(path), "rows": report.rows,
                             "imported": count, "rejected": report.problem_count,
                             "kpm_ids": [first_id, last_id]})
    return count
