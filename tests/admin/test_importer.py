"""``bpnt-switch import-kpm``: validation, duplicates, all-or-nothing, audit, and a
card from the file working at a terminal (SQLite always, PostgreSQL when there)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from loadtest.make_kpm_csv import nik_for, pan_for, pin_for, write_csv
from switch.admin import importer
from switch.admin.importer import ImportFormatError, import_kpm
from switch.clock import FixedClock
from switch.db.audit import verify
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Account, AuditRecord, Card, Kpm
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import allocate_period
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring
from switch.security.keys import pan_token
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink
from tests.postgres.pg import fresh_database

GOOD = "3273014507900001"  # a woman born 5 July 1990, Bandung
HEADER = "nik,name,pan,pin_offset,expiry_yymm\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'import.db'}",
                                 sqlite_synchronous="NORMAL")
        yield database
        database.dispose()
        return
    with fresh_database("bpnt_import") as url:
        database = open_database(url)
        yield database
        database.dispose()


KEYS = Keyring.from_settings(Settings())


def _counts(db: Database) -> tuple[int, int, int]:
    with db.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Kpm)) or 0,
                session.scalar(select(func.count()).select_from(Card)) or 0,
                session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def test_generated_file_imports_with_one_audit_record(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "kpm.csv"
    write_csv(path, 500)
    report = import_kpm(db, KEYS, path, actor="admin:test")
    assert report.ok and (report.rows, report.imported) == (500, 500), report.summary()
    assert _counts(db) == (500, 500, 1)
    with db.transaction() as session:
        record = session.scalars(select(AuditRecord)).one()
        assert (record.action, record.actor) == ("kpm.import", "admin:test")
        assert '"imported":500' in record.detail
        assert verify(session, KEYS.audit_key).ok
    assert check_invariants(db).ok


def test_bad_rows_are_reported_and_nothing_is_imported(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "kpm.csv"
    pan1, pan2, pan3 = pan_for(0), pan_for(1), pan_for(2)
    path.write_text(
        HEADER
        + f"{GOOD},Siti,{pan1},1234,3012\n"                    # line 2: fine
        + f"3273013207900001,Sri,{pan2},1234,3012\n"           # 3: day 32
        + f"9973014507900001,Ani,{pan2},1234,3012\n"           # 4: province 99
        + f"{GOOD},Dewi,{pan3},1234,3012\n"                    # 5: NIK repeated
        + f"3273014507900002,Nur,{pan1},1234,3012\n"           # 6: PAN repeated
        + f"3273014507900003,Eka,{pan1[:-1]}0,1234,3012\n"     # 7: Luhn (pan1 ends 9)
        + "3273014507900004,Wati,6032990000000043,12,3013\n"   # 8: offset too short
        + "3273014507900005,Tuti\n",                           # 9: short row
        encoding="utf-8")
    report = import_kpm(db, KEYS, path, actor="admin:test")
    assert not report.ok and report.imported == 0
    lines = {p.line: p.reason for p in report.problems}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9], report.summary()
    assert "not a date" in lines[3] and "province" in lines[4]
    assert "first on line 2" in lines[5] and "duplicate PAN" in lines[6]
    assert "Luhn" in lines[7] and "pin_offset" in lines[8] and "fields" in lines[9]
    assert _counts(db) == (0, 0, 0)


def test_duplicates_against_the_database(db: Database, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(first, 20)
    assert import_kpm(db, KEYS, first, actor="admin:test").ok
    write_csv(second, 30)  # the first 20 rows are already registered
    report = import_kpm(db, KEYS, second, actor="admin:test")
    assert report.imported == 0 and report.problem_count == 20
    assert {p.reason for p in report.problems} == {"NIK already registered"}
    assert _counts(db) == (20, 20, 1)
    skipped = import_kpm(db, KEYS, second, actor="admin:test", skip_invalid=True)
    assert (skipped.imported, skipped.problem_count) == (10, 20)
    assert _counts(db) == (30, 30, 2)
    third = tmp_path / "c.csv"
    third.write_text(HEADER + f"{GOOD},Siti,{pan_for(0)},1234,3012\n", encoding="utf-8")
    pan_taken = import_kpm(db, KEYS, third, actor="admin:test")
    assert [(p.line, p.reason) for p in pan_taken.problems] == [(2, "PAN already issued")]


def test_header_must_name_the_columns(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "kpm.csv"
    path.write_text("nik,name,pan\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="expiry_yymm"):
        import_kpm(db, KEYS, path, actor="admin:test")
    path.write_text("nik,name,pan,pin,pin_offset,expiry_yymm\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="exactly one"):
        import_kpm(db, KEYS, path, actor="admin:test")
    assert _counts(db) == (0, 0, 0)


def test_an_imported_card_buys_at_a_terminal(db: Database, tmp_path: Path) -> None:
    """The offsets the generator wrote verify the PIN the generator derived."""
    from switch.admin.registry import Registry
    from switch.admin.stock import receive_stock

    path = tmp_path / "kpm.csv"
    write_csv(path, 3, seed=7)
    assert import_kpm(db, KEYS, path, actor="admin:test").ok
    with db.transaction() as session:
        reg = Registry(session, KEYS, actor="admin:test")
        for code, name, category in (("TMP001", "Tempe", "protein"),):
            reg.add_item(code=code, name=name, category=category, allowed=True)
        ewarong = reg.register_ewarong(mid="EWARONG00000001", name="e-Warong 1")
        tmk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
        reg.register_terminal(tid="EDC00001", ewarong=ewarong, tmk=tmk)
        session.flush()
        receive_stock(session, KEYS, mid="EWARONG00000001", item_code="TMP001", quantity=10,
                      actor="admin:test")  # the shelf (inventory is on by default)
    allocate_period(db, "2026-11", 1_000_000)
    host = HostService(db, Settings(), FixedClock())
    pan = pan_for(1)
    card = KksCard(profile_for(pan, "01", "3002", KEYS.imk_ac))
    reader = EmulatedReader()
    reader.swap(card)
    edc = Edc(EdcConfig("EDC00001", "EWARONG00000001", tmk), DirectLink(host.process_unit),
              reader, clock=host.clock)
    result = edc.purchase([BasketLine("TMP001", 1, 500_000)], pin_for(7, pan))
    assert result.rc == codes.APPROVED and result.balance_sen == 500_000
    assert check_invariants(db).ok


def test_cli_import_kpm_exit_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "kpm.csv"
    write_csv(path, 10, clear_pins=True)  # the demo `pin` column
    cmd = [sys.executable, "-m", "switch.cli", "import-kpm", str(path), "--actor", "t",
           "--db", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "10 KPM imported" in done.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "line 2: NIK already registered" in again.stdout


def _luhn_by_definition(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
@settings(max_examples=500)
def test_luhn_matches_its_definition(digits: str) -> None:
    assert importer.luhn_ok(digits) == _luhn_by_definition(digits)
    wide = digits.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))  # non-ASCII digits
    assert importer.luhn_ok(wide) == _luhn_by_definition(digits)


def _write_rows(path: Path, rows: list[list[str]], header: str = HEADER) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(header)
        csv.writer(handle).writerows(rows)


def _file_rows(count: int) -> list[list[str]]:
    return [[nik_for(i), f"Siti {i}", pan_for(i), "123456", "3012"] for i in range(count)]


def _statements(db: Database) -> list[str]:
    """SQL that goes through SQLAlchemy from now on (the direct load's COPYs do not)."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_stored_rows_are_the_file(db: Database, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every column of every table, several chunks, awkward names, a psn column; on
    PostgreSQL by the direct load (no stage table), on SQLite by the staged one."""
    monkeypatch.setattr(importer, "BATCH_ROWS", 3)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
    names = ['Siti "Tab\tIn"', "Back\\slash \\N", "Two\nLines", "Ünïcødé 😀", "x" * 80,
             "  padded  ", "Wati", "Nur"]
    rows = [[nik_for(i), name, pan_for(i, 500), f"{100000 + i}", f"{29 + i % 3}{i + 1:02d}",
             f"{i:02d}" if i % 2 else ""] for i, name in enumerate(names)]
    path = tmp_path / "kpm.csv"
    _write_rows(path, rows, header="nik,name,pan,pin_offset,expiry_yymm,psn\n")
    seen = _statements(db)
    report = import_kpm(db, KEYS, path, actor="admin:test")
    assert report.ok and report.imported == len(rows), report.summary()
    staged = any("CREATE TEMPORARY TABLE" in statement for statement in seen)
    assert staged == (not db.is_postgres)
    with db.transaction() as session:
        kpms = session.scalars(select(Kpm).order_by(Kpm.id)).all()
        assert [k.nik for k in kpms] == [r[0] for r in rows]  # ids in file order
        for kpm, (nik, name, pan, offset, expiry, psn) in zip(kpms, rows, strict=True):
            assert (kpm.name, kpm.status) == (name.strip(), "active")
            wallet = session.get(Account, kpm.wallet_account_id)
            assert wallet is not None
            assert (wallet.kind, wallet.owner_ref, wallet.balance_sen) == (
                "kpm_wallet", f"NIK:{nik}", 0)
            card = session.scalars(select(Card).where(Card.kpm_id == kpm.id)).one()
            assert (card.pan_token, card.pan_masked, card.psn, card.expiry_yymm) == (
                pan_token(KEYS.pan_token_key, pan), mask_pan(pan), psn or "01", expiry)
            assert (card.status, card.pin_offset, card.wrong_pin_count) == ("active", offset, 0)
            assert card.last_atc is None and card.last_used_at is None
        record = session.scalars(select(AuditRecord)).one()
        detail = json.loads(record.detail)
        assert detail["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert detail["kpm_ids"] == [kpms[0].id, kpms[-1].id]
        assert (detail["rows"], detail["imported"], detail["rejected"]) == (8, 8, 0)
    assert check_invariants(db).ok


def test_a_conflict_in_a_later_chunk_imports_nothing(db: Database, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks loaded before the conflict are rolled back; every conflict and bad
    row is reported; --skip-invalid then imports exactly the rest."""
    monkeypatch.setattr(importer, "BATCH_ROWS", 5)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 5)
    rows = _file_rows(20)
    first = tmp_path / "a.csv"
    _write_rows(first, rows[15:])
    assert import_kpm(db, KEYS, first, actor="admin:test").ok
    second = tmp_path / "b.csv"
    _write_rows(second, [*rows, ["3273013207900001", "Sri", pan_for(99), "123456", "3012"]])
    report = import_kpm(db, KEYS, second, actor="admin:test")
    assert report.imported == 0 and report.rows == 21
    assert {(p.line, p.reason) for p in report.problems} == {
        *((line, "NIK already registered") for line in range(17, 22)),
        (22, "NIK 327301...: birth date 32/07 is not a date")}
    assert _counts(db) == (5, 5, 1)
    skipped = import_kpm(db, KEYS, second, actor="admin:test", skip_invalid=True)
    assert (skipped.imported, skipped.problem_count) == (15, 6), skipped.summary()
    assert _counts(db) == (20, 20, 2)
    assert check_invariants(db).ok


def test_a_bad_row_in_a_later_chunk_imports_nothing(db: Database, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 4)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 4)
    rows = _file_rows(12)
    rows[10][2] = rows[10][2][:-1] + str((int(rows[10][2][-1]) + 1) % 10)  # Luhn broken
    path = tmp_path / "kpm.csv"
    _write_rows(path, rows)
    report = import_kpm(db, KEYS, path, actor="admin:test")
    assert report.imported == 0 and [p.line for p in report.problems] == [12]
    assert "Luhn" in report.problems[0].reason
    assert _counts(db) == (0, 0, 0)
    skipped = import_kpm(db, KEYS, path, actor="admin:test", skip_invalid=True)
    assert (skipped.imported, skipped.problem_count) == (11, 1)
    assert _counts(db) == (11, 11, 1)


def test_demo_pins_become_offsets(db: Database, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from switch.security.pin import pin_offset

    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    path = tmp_path / "kpm.csv"
    write_csv(path, 5, seed=11, clear_pins=True)
    assert import_kpm(db, KEYS, path, actor="admin:test").ok
    with db.transaction() as session:
        cards = session.scalars(select(Card).order_by(Card.id)).all()
        assert [c.pin_offset for c in cards] == [
            pin_offset(KEYS.pvk, pin_for(11, pan_for(i)), pan_for(i)) for i in range(5)]
