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

Every row is validated (format, NIK, duplicates within the file) and checked
against the database (NIK or PAN already registered); each row is a new active
KPM with an active card and an empty wallet; money arrives with ``allocate``.
One transaction: any bad row (by default) means nothing is imported, and a report
lists every bad row with its line number and reason.  ``skip_invalid=True``
imports the good rows and reports the rest.

Two ways to the same result:

- *direct* (PostgreSQL, the normal case): a reader thread validates the file and
  hands over chunks of rows; the importer takes ids from the ``accounts`` and
  ``kpm`` sequences and copies each chunk (binary ``COPY``) straight into
  ``accounts``, ``kpm`` and ``cards``, inside a savepoint.  The tables' own unique keys
  (``kpm.nik``, ``accounts (kind, owner_ref)``, ``cards.pan_token``) are the
  check against the database: a violation, or (all-or-nothing) a bad row in the
  file, rolls back to the savepoint and the import is done the staged way, which
  names every conflicting row;
- *staged* (SQLite always; PostgreSQL after a conflict): the valid rows go to a
  temporary stage table (PostgreSQL: ``COPY``; SQLite: batched ``executemany``),
  are checked against the database with three joins, and inserted set-based:
  wallet accounts, KPM, cards.

One audit record per import (``kpm.import``, with the SHA-256 of the file as read
and the counts), appended last so the audit head is locked only for the commit.
The import does not take the switch's writer lock (it touches no existing row), so
a running switch on PostgreSQL keeps authorizing meanwhile.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.orm import Session

from switch.admin.nik import validate_nik
from switch.clock import Clock, SystemClock
from switch.db import audit as chain
from switch.db.engine import Database
from switch.ledger.accounts import WALLET_COPY, open_wallets_from_stage, wallet_copy_rows
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring
from switch.security.pin import pin_offset

REQUIRED_COLUMNS = ("nik", "name", "pan", "expiry_yymm")
#: Rows per executemany batch (SQLite) and per DELETE of rejected stage lines.
BATCH_ROWS = 50_000
#: Rows per chunk of the direct load (PostgreSQL): three COPYs each.
CHUNK_ROWS = 20_000
#: Problems kept in the report (a wholly wrong file should not fill memory).
MAX_PROBLEMS = 1000
#: ``progress(done, total)``: bytes of the file read so far, of its size.
Progress = Callable[[int, int], None]
STAGE = "kpm_import_stage"
STAGE_COLUMNS = ("line", "nik", "name", "wallet_ref", "pan_token", "pan_masked", "psn",
                 "expiry_yymm", "pin_offset")
#: Chunks the reader thread may be ahead of the database (memory bound).
READ_AHEAD_CHUNKS = 2


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

    def _restart(self) -> None:
        """Forget what a read of the file found (it is about to be read again)."""
        self.rows = self.imported = self.problem_count = 0
        self.problems = []


#: Luhn: the value a digit contributes when doubled (2d, or 2d - 9 above 9), by byte.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def luhn_ok(digits: str) -> bool:
    if digits.isascii() and digits.isdigit():  # the usual case, summed in C
        raw = digits.encode()[::-1]
        kept = raw[0::2]
        total = sum(kept) - 48 * len(kept) + sum(raw[1::2].translate(_LUHN_DOUBLED))
        return total % 10 == 0
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _row_problem(nik: str, name: str, pan: str, secret: str, secret_column: str,
                 expiry: str, psn: str) -> str | None:
    """Why a row (its stripped fields; ``psn`` defaulted) is unusable on its own."""
    if reason := validate_nik(nik):
        return f"NIK {nik[:6]}...: {reason}"
    if not 1 <= len(name) <= 80:
        return "name must be 1-80 characters"
    if not (16 <= len(pan) <= 19 and pan.isdigit()):
        return "PAN must be 16-19 digits"
    if not luhn_ok(pan):
        return f"PAN {mask_pan(pan)} fails the Luhn check"
    if not (4 <= len(secret) <= 12 and secret.isdigit()):
        return f"{secret_column} must be 4-12 digits"
    if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
        return "expiry_yymm must be YYMM"
    if not (len(psn) == 2 and psn.isdigit()):
        return "psn must be 2 digits"
    return None


class _HashingReader(io.RawIOBase):
    """A binary file that hashes what is read from it (the audit's SHA-256 is of
    exactly the bytes imported, with no second read of the file)."""

    def __init__(self, raw: io.BufferedReader, progress: Progress | None = None,
                 total: int = 0) -> None:
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self._progress, self._total, self._read = progress, total, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self._read += n
            if self._progress is not None:
                self._progress(self._read, max(self._total, self._read))
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextmanager
def _open_rows(path: Path, keys: Keyring, report: ImportReport,
               progress: Progress | None = None
               ) -> Iterator[tuple[Iterator[tuple[Any, ...]], Any]]:
    """Check the header of ``path`` (:class:`ImportFormatError`), then give the
    stage tuples of its rows (:func:`_valid_rows`) and the SHA-256 object of the
    bytes read, complete once the rows are exhausted."""
    raw = _HashingReader(path.open("rb"), progress,
                         path.stat().st_size if progress is not None else 0)
    with io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig",
                          newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ImportFormatError(f"{path.name}: header lacks {', '.join(missing)}")
        if ("pin_offset" in header) == ("pin" in header):
            raise ImportFormatError(f"{path.name}: need exactly one of pin_offset, pin")
        yield _valid_rows(reader, header, keys, report), raw.sha256


def _valid_rows(reader: Any, header: list[str], keys: Keyring, report: ImportReport
                ) -> Iterator[tuple[Any, ...]]:
    """Stage tuples (:data:`STAGE_COLUMNS`) of the rows that are valid on their own
    and not repeated in the file; the rest go to ``report``."""
    width = len(header)
    column = {name: i for i, name in enumerate(header)}  # a repeated name: the last
    i_nik, i_name, i_pan, i_expiry = (column[c] for c in REQUIRED_COLUMNS)
    demo_pins = "pin" in column
    secret_column = "pin" if demo_pins else "pin_offset"
    i_secret, i_psn = column[secret_column], column.get("psn")
    pvk, add = keys.pvk, report.add
    # pan_token(): HMAC-SHA256 of the PAN, the key schedule done once.
    token_mac = hmac.new(keys.pan_token_key, digestmod=hashlib.sha256)
    first_nik: dict[str, int] = {}
    first_pan: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not values or values == [""]:
            continue
        report.rows += 1
        if len(values) != width:
            add(line, f"{len(values)} fields, the header has {width}")
            continue
        nik, name, pan = values[i_nik].strip(), values[i_name].strip(), values[i_pan].strip()
        secret, expiry = values[i_secret].strip(), values[i_expiry].strip()
        psn = (values[i_psn].strip() if i_psn is not None else "") or "01"
        if reason := _row_problem(nik, name, pan, secret, secret_column, expiry, psn):
            add(line, reason)
            continue
        if nik in first_nik:
            add(line, f"duplicate NIK (first on line {first_nik[nik]})")
            continue
        if pan in first_pan:
            add(line, f"duplicate PAN {mask_pan(pan)} (first on line {first_pan[pan]})")
            continue
        first_nik[nik] = first_pan[pan] = line
        token = token_mac.copy()
        token.update(pan.encode())
        yield (line, nik, name, "NIK:" + nik, token.hexdigest(), mask_pan(pan), psn, expiry,
               pin_offset(pvk, secret, pan) if demo_pins else secret)


_END = object()


class _ReaderThread:
    """Runs an iterator in a thread, at most :data:`READ_AHEAD_CHUNKS` items ahead of
    :meth:`items`: the file is read, validated, tokenized and formatted while the
    database loads what came before."""

    def __init__(self, produce: Iterator[Any]) -> None:
        self._produce = produce
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kpm-import-reader",
                                        daemon=True)

    def __enter__(self) -> _ReaderThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._produce:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - re-raised by items()
            self._put(exc)

    def items(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item


#: The direct load's tables: COPY statement and column types, in load order.
_DIRECT = (
    WALLET_COPY,
    ("COPY kpm (id, nik, name, status, wallet_account_id, zone, created_at) "
     "FROM STDIN (FORMAT BINARY)",
     ("int4", "text", "text", "text", "int4", "text", "timestamptz")),
    ("COPY cards (pan_token, pan_masked, kpm_id, psn, expiry_yymm, status, pin_offset, "
     "wrong_pin_count, issued_at) FROM STDIN (FORMAT BINARY)",
     ("text", "text", "int4", "text", "text", "text", "text", "int4", "timestamptz")),
)


@dataclass(frozen=True)
class _Chunk:
    """One chunk of the direct load: binary COPY data per :data:`_DIRECT` table."""

    data: tuple[bytes, ...]
    count: int
    first_kpm_id: int
    last_kpm_id: int


def _direct_chunks(rows: Iterator[tuple[Any, ...]], connection: Any, now: datetime
                   ) -> Iterator[_Chunk]:
    """Chunks of :data:`CHUNK_ROWS` stage tuples, with ids from the ``accounts`` and
    ``kpm`` sequences and formatted as binary COPY data.  The ids are taken on
    ``connection``, not the import's own (busy loading): ``nextval`` is outside
    transactions anyway, and the ids of an import rolled back are skipped, as ever."""
    from psycopg.copy import Copy, FileWriter

    cursor = connection.cursor()
    seqs = cursor.execute(
        "SELECT pg_get_serial_sequence('accounts', 'id')::regclass::oid, "
        "pg_get_serial_sequence('kpm', 'id')::regclass::oid").fetchone()

    def take_ids(count: int) -> list[tuple[int, int]]:
        ids: list[tuple[int, int]] = cursor.execute(
            "SELECT nextval(%s::oid::regclass), nextval(%s::oid::regclass) "
            "FROM generate_series(1, %s)", (*seqs, count)).fetchall()
        connection.commit()  # never idle in a transaction while the import loads
        return ids

    def binary(types: tuple[str, ...], values: Iterator[tuple[Any, ...]]) -> bytes:
        out = io.BytesIO()
        with Copy(connection.cursor(), binary=True, writer=FileWriter(out)) as copy:
            copy.set_types(types)
            write = copy.write_row
            for value in values:
                write(value)
        return out.getvalue()

    (_, account_types), (_, kpm_types), (_, card_types) = _DIRECT

    def chunk(batch: list[tuple[Any, ...]]) -> _Chunk:
        pairs = list(zip(take_ids(len(batch)), batch, strict=True))
        return _Chunk(
            (binary(account_types, wallet_copy_rows(((a, r[3]) for (a, _), r in pairs), now)),
             binary(kpm_types, ((k, r[1], r[2], "active", a, r[1][:6], now)
                                for (a, k), r in pairs)),
             binary(card_types, ((r[4], r[5], k, r[6], r[7], "active", r[8], 0, now)
                                 for (_, k), r in pairs))),
            len(batch), pairs[0][0][1], pairs[-1][0][1])  # nextval() ascends

    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield chunk(batch)
            batch = []
    if batch:
        yield chunk(batch)


def _load_direct(session: Session, keys: Keyring, path: Path, report: ImportReport, *,
                 skip_invalid: bool, now: datetime, progress: Progress | None = None
                 ) -> tuple[int, int | None, int | None, str] | None:
    """The direct load (module docstring) in a savepoint: (count, first and last KPM
    id, SHA-256), or ``None`` after rolling back to the savepoint when the staged
    way must say which rows are wrong."""
    from psycopg import errors

    def stop() -> bool:  # all or nothing, and a row is already known to be bad
        return bool(report.problem_count) and not skip_invalid

    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None
    session.execute(text("SAVEPOINT kpm_import_direct"))
    count, first, last = 0, None, None
    try:
        with driver.cursor() as cursor, \
                closing(connection.engine.raw_connection()) as ids_connection, \
                _open_rows(path, keys, report, progress) as (rows, sha256), \
                _ReaderThread(_direct_chunks(rows, ids_connection.driver_connection,
                                             now)) as reader:
            for chunk in reader.items():
                if stop():
                    break
                for (statement, _), data in zip(_DIRECT, chunk.data, strict=True):
                    with cursor.copy(statement) as copy:
                        copy.write(data)
                count += chunk.count
                first = chunk.first_kpm_id if first is None else min(first, chunk.first_kpm_id)
                last = chunk.last_kpm_id if last is None else max(last, chunk.last_kpm_id)
            else:
                if stop():  # every row loaded without a conflict: the report is complete
                    raise _RolledBack
                session.execute(text("RELEASE SAVEPOINT kpm_import_direct"))
                return count, first, last, sha256.hexdigest()
    except errors.UniqueViolation:  # NIK or PAN already in the database
        pass
    session.execute(text("ROLLBACK TO SAVEPOINT kpm_import_direct"))
    return None


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
    # The DBAPI cursor, positional: SQLAlchemy's per-row parameter handling would
    # cost more than SQLite's insert.
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    insert = (f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES "
              f"({', '.join('?' for _ in STAGE_COLUMNS)})")
    try:
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                cursor.executemany(insert, batch)
                batch = []
        if batch:
            cursor.executemany(insert, batch)
    finally:
        cursor.close()


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
    open_wallets_from_stage(session, STAGE, "wallet_ref", now)
    session.execute(text(
        "INSERT INTO kpm (nik, name, status, wallet_account_id, zone, created_at) "
        f"SELECT s.nik, s.name, 'active', a.id, substr(s.nik, 1, 6), :now FROM {STAGE} s "
        "JOIN accounts a "
        "ON a.kind = 'kpm_wallet' AND a.owner_ref = s.wallet_ref ORDER BY s.line"
    ).bindparams(stamp))
    session.execute(text(
        "INSERT INTO cards (pan_token, pan_masked, kpm_id, psn, expiry_yymm, status, "
        "pin_offset, wrong_pin_count, issued_at) "
        "SELECT s.pan_token, s.pan_masked, k.id, s.psn, s.expiry_yymm, 'active', "
        f"s.pin_offset, 0, :now FROM {STAGE} s JOIN kpm k ON k.nik = s.nik ORDER BY s.line"
    ).bindparams(stamp))
    count, first, last = session.execute(text(
        f"SELECT count(*), min(k.id), max(k.id) FROM {STAGE} s JOIN kpm k ON k.nik = s.nik"
    )).one()
    return int(count), first, last


def _load_staged(session: Session, keys: Keyring, path: Path, report: ImportReport, *,
                 skip_invalid: bool, clock: Clock, progress: Progress | None = None
                 ) -> tuple[int, int | None, int | None, str]:
    """The staged load (module docstring): (count, first and last KPM id, SHA-256)."""
    with _open_rows(path, keys, report, progress) as (rows, sha256):
        _stage(session, rows)
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
    return count, first_id, last_id, sha256.hexdigest()


def import_kpm(db: Database, keys: Keyring, path: Path, *, actor: str,
               skip_invalid: bool = False, clock: Clock | None = None,
               progress: Progress | None = None) -> ImportReport:
    """Import ``path`` (module docstring); ``report.imported`` is 0 unless it committed.
    ``progress(done, total)``: the bytes of the file read so far (the reading may be on
    another thread)."""
    clock = clock or SystemClock()
    started = time.monotonic()
    report = ImportReport()
    try:
        with db.transaction(exclusive=False) as session:
            report.imported = _load(session, keys, path, report, actor=actor,
                                    skip_invalid=skip_invalid, clock=clock,
                                    progress=progress)
    except _RolledBack:
        report.imported = 0
    report.seconds = time.monotonic() - started
    return report


def _load(session: Session, keys: Keyring, path: Path, report: ImportReport, *, actor: str,
          skip_invalid: bool, clock: Clock, progress: Progress | None = None) -> int:
    loaded = None
    if session.connection().dialect.name == "postgresql":
        # For the staged way's joins; durability (synchronous_commit) is untouched.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        loaded = _load_direct(session, keys, path, report, skip_invalid=skip_invalid,
                              now=clock.now(), progress=progress)
        if loaded is None:
            report._restart()
    if loaded is None:
        loaded = _load_staged(session, keys, path, report, skip_invalid=skip_invalid,
                              clock=clock, progress=progress)
    count, first_id, last_id, sha256 = loaded
    if count:
        chain.append(session, keys.audit_key, at=clock.now(), actor=actor,
                     action="kpm.import", subject=path.name[:80],
                     detail={"sha256": sha256, "rows": report.rows,
                             "imported": count, "rejected": report.problem_count,
                             "kpm_ids": [first_id, last_id]})
    return count
