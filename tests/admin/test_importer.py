"""``bpnt-switch import-kpm``: validation, duplicates, all-or-nothing, audit, and a
card from the file working at a terminal (SQLite always, PostgreSQL when there)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from loadtest.make_kpm_csv import pan_for, pin_for, write_csv
from switch.admin.importer import ImportFormatError, import_kpm
from switch.audit.chain import verify
from switch.audit.models import AuditRecord
from switch.clock import FixedClock
from switch.host.keyring import Keyring
from switch.host.service import HostService
from switch.ledger.database import Database, open_database
from switch.ledger.invariants import check_invariants
from switch.ledger.models import Card, Kpm
from switch.ledger.postings import allocate_period
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
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
