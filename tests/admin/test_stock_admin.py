"""``bpnt-switch stock receive|import|adjust|threshold|show`` (issue 14, F15), on both
engines: the rows written, the audit records, exit codes, idempotency, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from switch.admin.csv_rows import CsvRejected
from switch.admin.stock import import_stock, read_stock_file, stock_rows
from switch.db.tables import Ewarong, Stock, StockReceipt
from switch.settings import Settings
from tests.admin.rules_helpers import assert_audit_verifies, audit_count, audits, run_cli
from tests.world import HostWorld

SEEDED = 100_000


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _mid(world: HostWorld) -> str:
    return world.terminal().mid


def _units(world: HostWorld, mid: str, item: str) -> int | None:
    with world.db.transaction() as session:
        found = session.scalar(select(Stock.quantity).join(
            Ewarong, Ewarong.id == Stock.ewarong_id).where(Ewarong.mid == mid,
                                                            Stock.item_code == item))
    return None if found is None else int(found)


def _receipts(world: HostWorld) -> list[tuple[str, str, int, str | None, str]]:
    with world.db.transaction() as session:
        rows = session.execute(select(StockReceipt.item_code, StockReceipt.kind,
                                      StockReceipt.quantity, StockReceipt.reference,
                                      StockReceipt.actor)
                               .where(StockReceipt.actor != "demo-seed")
                               .order_by(StockReceipt.id)).all()
    return [(item, kind, int(quantity), reference, actor)
            for item, kind, quantity, reference, actor in rows]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "file.csv"
    path.write_text(text)
    return path


def test_receive_adds_once_per_reference(world: HostWorld,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    mid = _mid(world)
    code, out, _ = run_cli(world, capsys, "stock", "receive", "--ewarong", mid, "--item",
                           "BRS005", "--units", "40", "--reference", "DN-7", "--actor", "ops")
    assert code == 0 and f"{SEEDED + 40} units" in out
    assert _units(world, mid, "BRS005") == SEEDED + 40
    assert _receipts(world) == [("BRS005", "receive", 40, "DN-7", "admin:ops")]
    assert audits(world, "stock.receive")[-1] == (
        "admin:ops", f"{mid}:BRS005",
        {"quantity": 40, "after": SEEDED + 40, "reference": "DN-7", "reason": None})
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "stock", "receive", "--ewarong", mid, "--item",
                           "BRS005", "--units", "40", "--reference", "DN-7", "--actor", "ops")
    assert code == 0 and "already received" in out
    assert _units(world, mid, "BRS005") == SEEDED + 40
    assert len(_receipts(world)) == 1 and audit_count(world) == written
    assert_audit_verifies(world)


@pytest.mark.parametrize(("argv", "message"), [
    (["--ewarong", "EWARONG00000077", "--item", "BRS005", "--units", "5"], "no e-warong"),
    (["--ewarong", "MID", "--item", "NOPE01", "--units", "5"], "no item NOPE01"),
    (["--ewarong", "MID", "--item", "BRS005", "--units", "0"], "positive number"),
    (["--ewarong", "MID", "--item", "BRS005", "--units", "-5"], "positive number"),
])
def test_receive_of_what_does_not_exist_is_2(world: HostWorld,
                                             capsys: pytest.CaptureFixture[str],
                                             argv: list[str], message: str) -> None:
    argv = [_mid(world) if arg == "MID" else arg for arg in argv]
    written = audit_count(world)
    code, out, err = run_cli(world, capsys, "stock", "receive", *argv, "--actor", "ops")
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert _receipts(world) == [] and audit_count(world) == written


def test_import_receives_every_row_once(world: HostWorld, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    mid = _mid(world)
    path = _write(tmp_path, "mid,item,units,reference\n"
                            f"{mid},BRS005,10,DN-1\n"
                            f"{mid},TLR010,20,DN-1\n"
                            f"{mid},AYM010,5,demo-seed\n")
    code, out, _ = run_cli(world, capsys, "stock", "import", str(path), "--actor", "ops")
    assert code == 0, out
    assert "received 2 rows (30 units), skipped 1" in out
    assert "line 4:" in out and "already received" in out
    assert (_units(world, mid, "BRS005"), _units(world, mid, "TLR010"),
            _units(world, mid, "AYM010")) == (SEEDED + 10, SEEDED + 20, SEEDED)
    assert _receipts(world) == [("BRS005", "receive", 10, "DN-1", "admin:ops"),
                                ("TLR010", "receive", 20, "DN-1", "admin:ops")]
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "stock", "import", str(path), "--actor", "ops")
    assert code == 0 and "received 0 rows (0 units), skipped 3" in out
    assert len(_receipts(world)) == 2 and audit_count(world) == written
    assert _units(world, mid, "BRS005") == SEEDED + 10
    assert_audit_verifies(world)


def test_a_bad_line_imports_nothing_and_every_bad_line_is_named(
        world: HostWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mid = _mid(world)
    path = _write(tmp_path, "mid,item,units,reference\n"
                            f"{mid},BRS005,10,DN-1\n"          # 2: good
                            "EWARONG00000077,BRS005,10,DN-2\n"  # 3: unknown MID
                            f"{mid},NOPE01,10,DN-3\n"          # 4: unknown item
                            f"{mid},BRS005,0,DN-4\n"           # 5: zero
                            f"{mid},BRS005,abc,DN-5\n"         # 6: not a number
                            f"{mid},BRS005,-3,DN-6\n"          # 7: negative
                            f"{mid},BRS005,4,DN-1\n"           # 8: reference again
                            f"{mid},TLR010,4,\n")              # 9: no reference
    written = audit_count(world)
    code, out, err = run_cli(world, capsys, "stock", "import", str(path), "--actor", "ops")
    assert code == 1 and out == "" and "nothing imported" in err
    for line, reason in [(3, "unknown e-warong"), (4, "unknown item"),
                         (5, "not a positive integer"), (6, "not a positive integer"),
                         (7, "not a positive integer"), (8, "again (line 2)"),
                         (9, "no reference")]:
        assert f"line {line}: " in err and reason in err.split(f"line {line}: ")[1]
    assert "line 2:" not in err
    assert _receipts(world) == [] and audit_count(world) == written
    assert _units(world, mid, "BRS005") == SEEDED


def test_an_import_file_without_the_columns_is_2(world: HostWorld, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "mid,item,units\nX,BRS005,1\n")
    code, _, err = run_cli(world, capsys, "stock", "import", str(path), "--actor", "ops")
    assert code == 2 and "missing: reference" in err
    code, _, err = run_cli(world, capsys, "stock", "import", str(tmp_path / "none.csv"),
                           "--actor", "ops")
    assert code == 2 and "cannot read" in err


def test_read_and_import_directly(world: HostWorld, tmp_path: Path) -> None:
    mid = _mid(world)
    path = _write(tmp_path, f"reference,units,item,mid\nDN-9,3,KTG010,{mid}\n")
    with world.db.transaction() as session:
        lines = read_stock_file(session, path)
        report = import_stock(session, world.keys, lines, actor="admin:t", clock=world.clock)
    assert [(row.line, row.units) for row, _ in report.received] == [(2, 3)]
    assert report.received[0][1] == SEEDED + 3 and report.skipped == ()
    bad = _write(tmp_path, f"mid,item,units,reference\n{mid},KTG010,1.5,X\n")
    with world.db.transaction() as session, pytest.raises(CsvRejected) as caught:
        read_stock_file(session, bad)
    assert [(b.line, b.reason) for b in caught.value.bad_lines] == [
        (2, "units '1.5' is not a positive integer")]


def test_adjust_writes_off_and_refuses_below_zero(world: HostWorld,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    mid = _mid(world)
    code, out, _ = run_cli(world, capsys, "stock", "adjust", "--ewarong", mid, "--item",
                           "TLR010", "--units", "-5", "--reason", "broken eggs",
                           "--actor", "ops")
    assert code == 0 and f"{SEEDED - 5} units" in out
    assert _units(world, mid, "TLR010") == SEEDED - 5
    assert _receipts(world) == [("TLR010", "adjust", -5, None, "admin:ops")]
    assert audits(world, "stock.adjust") == [("admin:ops", f"{mid}:TLR010", {
        "quantity": -5, "after": SEEDED - 5, "reference": None, "reason": "broken eggs"})]
    written = audit_count(world)
    code, out, err = run_cli(world, capsys, "stock", "adjust", "--ewarong", mid, "--item",
                             "TLR010", "--units", str(-SEEDED), "--reason", "x",
                             "--actor", "ops")
    assert code == 1 and "below zero" in err and f"holds {SEEDED - 5}" in err
    assert _units(world, mid, "TLR010") == SEEDED - 5
    assert len(_receipts(world)) == 1 and audit_count(world) == written
    # the inactive e-warong holds nothing: even one unit is refused, no row appears
    empty = world.demo.terminal_labelled("ewarong_inactive").mid
    code, _, err = run_cli(world, capsys, "stock", "adjust", "--ewarong", empty, "--item",
                           "TLR010", "--units", "-1", "--reason", "x", "--actor", "ops")
    assert code == 1 and "holds 0" in err and _units(world, empty, "TLR010") is None
    assert_audit_verifies(world)


def test_threshold_and_show(world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    mid = _mid(world)
    code, out, _ = run_cli(world, capsys, "stock", "threshold", "--ewarong", mid, "--item",
                           "BRS005", "--units", str(SEEDED + 1), "--actor", "ops")
    assert code == 0 and f"threshold {SEEDED + 1}" in out
    code, out, _ = run_cli(world, capsys, "stock", "show", "--ewarong", mid)
    lines = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert code == 0 and lines["BRS005"].split()[2:] == [str(SEEDED), str(SEEDED + 1), "LOW"]
    assert lines["TLR010"].split()[2:] == [str(SEEDED), "10", "(def)"]
    assert len(lines) == 11  # the allowed items
    code, out, _ = run_cli(world, capsys, "stock", "threshold", "--ewarong", mid, "--item",
                           "BRS005", "--default", "--actor", "ops")
    assert code == 0 and "the setting's (10)" in out
    assert [detail for _, _, detail in audits(world, "stock.threshold")] == [
        {"units": SEEDED + 1, "before": None}, {"units": None, "before": SEEDED + 1}]
    with world.db.transaction() as session:
        rows = stock_rows(session, default_threshold=Settings().low_stock_units, mid=mid)
        assert not any(row.low for row in rows)
    code, _, err = run_cli(world, capsys, "stock", "threshold", "--ewarong", mid, "--item",
                           "MNY002", "--units", "3", "--actor", "ops")
    assert code == 2 and "never received MNY002" in err
    code, _, err = run_cli(world, capsys, "stock", "show", "--ewarong", "EWARONG00000077")
    assert code == 2 and "no e-warong" in err
    code, out, _ = run_cli(world, capsys, "stock", "show")
    assert code == 0 and len(out.splitlines()) == 12
    assert_audit_verifies(world)


def test_stock_receipts_add_up(world: HostWorld) -> None:
    """Receipts and adjustments keep stock = Σ receipts (no sales here)."""
    with world.db.transaction() as session:
        total = session.scalar(select(func.sum(Stock.quantity)))
        receipts = session.scalar(select(func.sum(StockReceipt.quantity)))
    assert int(total or 0) == int(receipts or 0) == 11 * SEEDED
