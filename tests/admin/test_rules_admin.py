"""``bpnt-switch rules ewarong|kpm-zone|price|prices-import|show`` (issue 14, F9, F11), on
both engines: the rows written, before/after audit records, exit codes, no change
written twice, all or nothing, and no NIK beyond its first 6 digits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from switch.admin.errors import InvalidInput
from switch.admin.rules_admin import (
    RulesChange,
    ewarong_rules,
    parse_hours,
    set_ewarong_rules,
    set_reference_price,
)
from switch.db.tables import AuditRecord, Ewarong, EwarongZone, Kpm, ReferencePrice
from tests.admin.rules_helpers import assert_audit_verifies, audit_count, audits, run_cli
from tests.world import HostWorld


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _ewarong(world: HostWorld, mid: str) -> tuple[list[str], str | None, str | None,
                                                   str | None, int]:
    with world.db.transaction() as session:
        row = session.scalars(select(Ewarong).where(Ewarong.mid == mid)).one()
        zones = list(session.scalars(select(EwarongZone.zone_prefix).where(
            EwarongZone.ewarong_id == row.id).order_by(EwarongZone.zone_prefix)))
        return zones, row.region, row.open_hhmm, row.close_hhmm, row.utc_offset_minutes


def test_rules_ewarong_sets_and_replaces(world: HostWorld,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    mid = world.terminal().mid
    assert _ewarong(world, mid) == ([], None, None, None, 420)
    code, out, _ = run_cli(world, capsys, "rules", "ewarong", "--mid", mid, "--zones",
                           "3273,327301", "--region", "3273", "--hours", "0700-1700",
                           "--utc-offset", "480", "--actor", "ops")
    assert code == 0 and "now: " in out and "hours 0700-1700" in out
    assert _ewarong(world, mid) == (["3273", "327301"], "3273", "0700", "1700", 480)
    [(actor, subject, detail)] = audits(world, "ewarong.rules")
    assert (actor, subject) == ("admin:ops", mid)
    assert detail["before"] == {"zones": [], "region": None, "open_hhmm": None,
                                "close_hhmm": None, "utc_offset_minutes": 420}
    assert detail["after"] == {"zones": ["3273", "327301"], "region": "3273",
                               "open_hhmm": "0700", "close_hhmm": "1700",
                               "utc_offset_minutes": 480}
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "rules", "ewarong", "--mid", mid, "--zones",
                           "327301,3273", "--actor", "ops")
    assert code == 0 and out.startswith("unchanged") and audit_count(world) == written
    code, out, _ = run_cli(world, capsys, "rules", "ewarong", "--mid", mid, "--zones", "32",
                           "--hours", "2200-0600", "--actor", "ops")
    assert code == 0 and "(overnight)" in out
    assert _ewarong(world, mid) == (["32"], "3273", "2200", "0600", 480)
    code, out, _ = run_cli(world, capsys, "rules", "ewarong", "--mid", mid, "--no-zones",
                           "--always-open", "--no-region", "--actor", "ops")
    assert code == 0 and _ewarong(world, mid) == ([], None, None, None, 480)
    assert len(audits(world, "ewarong.rules")) == 3
    code, out, _ = run_cli(world, capsys, "rules", "show", "--mid", mid)
    assert code == 0 and out.strip() == (f"{mid}  zones all  region national  "
                                         "hours always open  UTC+480 (WITA)")
    assert_audit_verifies(world)


@pytest.mark.parametrize(("argv", "message"), [
    (["--zones", "327"], "'327' is not a 2, 4 or 6-digit region code"),
    (["--zones", "3273,abcd"], "'abcd' is not"),
    (["--zones", ","], "names no zone"),
    (["--region", "1234567"], "is not a 2, 4 or 6-digit"),
    (["--hours", "2500-0100"], "are not HHMM-HHMM"),
    (["--hours", "0700-1760"], "are not HHMM-HHMM"),
    (["--hours", "0700"], "are not HHMM-HHMM"),
    (["--hours", "0700-0700"], "--always-open"),
    (["--utc-offset", "400"], "UTC offset 400 is not one of 420 (WIB), 480 (WITA), 540 (WIT)"),
])
def test_rules_ewarong_refuses_bad_values_writing_nothing(
        world: HostWorld, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    mid = world.terminal().mid
    written = audit_count(world)
    code, out, err = run_cli(world, capsys, "rules", "ewarong", "--mid", mid,
                             "--zones", "3273", *argv, "--actor", "ops") \
        if argv[0] != "--zones" else run_cli(world, capsys, "rules", "ewarong", "--mid",
                                             mid, *argv, "--actor", "ops")
    assert code == 2 and message in err and out == "" and "Traceback" not in err
    assert _ewarong(world, mid) == ([], None, None, None, 420)
    assert audit_count(world) == written


def test_rules_of_an_unknown_ewarong_is_2(world: HostWorld,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(world, capsys, "rules", "ewarong", "--mid", "EWARONG00000077",
                           "--always-open", "--actor", "ops")
    assert code == 2 and "no e-warong EWARONG00000077" in err
    code, _, err = run_cli(world, capsys, "rules", "show", "--mid", "EWARONG00000077")
    assert code == 2
    code, out, _ = run_cli(world, capsys, "rules", "show")
    assert code == 0 and len(out.splitlines()) == 2  # the active and the inactive one


def test_set_ewarong_rules_directly(world: HostWorld) -> None:
    mid = world.terminal().mid
    with world.db.transaction() as session:
        before, after = set_ewarong_rules(
            session, world.keys, mid=mid, actor="admin:t", clock=world.clock,
            change=RulesChange(zones=["35", "3273", "35"], hours=("0800", "1600")))
        assert before.zones == () and after.zones == ("3273", "35")
        assert ewarong_rules(session, mid) == [after]
        with pytest.raises(InvalidInput):
            set_ewarong_rules(session, world.keys, mid=mid, actor="admin:t",
                              clock=world.clock, change=RulesChange(utc_offset_minutes=0))
    assert parse_hours("2359-0000") == ("2359", "0000")


def test_kpm_zone_never_writes_the_nik(world: HostWorld,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with world.db.transaction() as session:
        kpm_id, nik, zone = session.execute(select(Kpm.id, Kpm.nik, Kpm.zone)
                                            .order_by(Kpm.id)).first()  # type: ignore[misc]
    assert zone == nik[:6]
    code, out, err = run_cli(world, capsys, "rules", "kpm-zone", "--nik", nik, "--zone",
                             "3578", "--actor", "ops")
    assert code == 0 and out.strip() == f"KPM {kpm_id}: zone {zone} -> 3578"
    with world.db.transaction() as session:
        assert session.get(Kpm, kpm_id).zone == "3578"  # type: ignore[union-attr]
        every_audit = " ".join(f"{r.subject} {r.detail}"
                               for r in session.scalars(select(AuditRecord)))
    assert audits(world, "kpm.zone") == [
        ("admin:ops", f"kpm:{kpm_id}", {"before": zone, "after": "3578"})]
    assert nik not in every_audit and nik not in out + err
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "rules", "kpm-zone", "--nik", nik, "--zone",
                           "3578", "--actor", "ops")
    assert code == 0 and "(unchanged)" in out and audit_count(world) == written
    code, _, err = run_cli(world, capsys, "rules", "kpm-zone", "--nik", nik, "--zone",
                           "357", "--actor", "ops")
    assert code == 2 and "'357' is not" in err
    unknown = "3273010101990001"
    code, _, err = run_cli(world, capsys, "rules", "kpm-zone", "--nik", unknown, "--zone",
                           "3578", "--actor", "ops")
    assert code == 2 and "no KPM with NIK 327301…" in err and unknown not in err
    assert audit_count(world) == written
    assert_audit_verifies(world)


def _price(world: HostWorld, item: str, region: str) -> int | None:
    with world.db.transaction() as session:
        row = session.get(ReferencePrice, (item, region))
        return None if row is None else int(row.unit_price_sen)


def test_rules_price_upserts(world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(world, capsys, "rules", "price", "--item", "BRS005", "--region",
                           "3273", "--unit-price-sen", "6600000", "--actor", "ops")
    assert code == 0 and "BRS005 3273: reference 6600000 sen (new)" in out
    assert _price(world, "BRS005", "3273") == 6_600_000
    assert _price(world, "BRS005", "") == 6_500_000
    code, out, _ = run_cli(world, capsys, "rules", "price", "--item", "BRS005",
                           "--unit-price-sen", "6700000", "--actor", "ops")
    assert code == 0 and "national: reference 6700000 sen (was 6500000)" in out
    assert _price(world, "BRS005", "") == 6_700_000
    assert audits(world, "price.reference") == [
        ("admin:ops", "BRS005:3273", {"before_sen": None, "unit_price_sen": 6_600_000}),
        ("admin:ops", "BRS005:national", {"before_sen": 6_500_000,
                                          "unit_price_sen": 6_700_000})]
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "rules", "price", "--item", "BRS005",
                           "--unit-price-sen", "6700000", "--actor", "ops")
    assert code == 0 and "(unchanged)" in out and audit_count(world) == written
    for argv, message in [(["--item", "NOPE01", "--unit-price-sen", "5"], "no item NOPE01"),
                          (["--item", "BRS005", "--unit-price-sen", "0"], "positive number"),
                          (["--item", "BRS005", "--region", "123", "--unit-price-sen", "5"],
                           "'123' is not")]:
        code, _, err = run_cli(world, capsys, "rules", "price", *argv, "--actor", "ops")
        assert code == 2 and message in err
    assert audit_count(world) == written
    with world.db.transaction() as session:
        assert set_reference_price(session, world.keys, item_code="TLR010", region="32",
                                   unit_price_sen=2_900_000, actor="admin:t",
                                   clock=world.clock) == (None, 2_900_000)
    assert_audit_verifies(world)


def test_prices_import_all_or_nothing(world: HostWorld, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("item,region,unit_price_sen\n"
                    "BRS005,3273,6600000\n"
                    "TLR010,,2800000\n"        # the national price as it is
                    "AYM010,32,3900000\n")
    code, out, _ = run_cli(world, capsys, "rules", "prices-import", str(path), "--actor", "ops")
    assert code == 0 and out.strip() == "2 reference prices set, 1 unchanged"
    assert (_price(world, "BRS005", "3273"), _price(world, "AYM010", "32")) == (6_600_000,
                                                                                3_900_000)
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "rules", "prices-import", str(path), "--actor", "ops")
    assert code == 0 and out.strip() == "0 reference prices set, 3 unchanged"
    assert audit_count(world) == written
    bad = tmp_path / "bad.csv"
    bad.write_text("item,region,unit_price_sen\n"
                   "BRS005,,9999999\n"          # 2: good
                   "NOPE01,,100\n"              # 3: unknown item
                   "BRS005,12345,100\n"         # 4: bad region
                   "TLR010,32,-1\n"             # 5: not positive
                   "BRS005,,100\n")             # 6: again
    code, out, err = run_cli(world, capsys, "rules", "prices-import", str(bad), "--actor", "ops")
    assert code == 1 and out == "" and "4 bad line(s), nothing imported" in err
    for line, reason in [(3, "unknown item 'NOPE01'"), (4, "region '12345' is not"),
                         (5, "unit_price_sen '-1' is not a positive integer"),
                         (6, "BRS005 national again (line 2)")]:
        assert f"line {line}: {reason}" in err
    assert _price(world, "BRS005", "") == 6_500_000 and audit_count(world) == written
    code, _, _ = run_cli(world, capsys, "audit", "verify")
    assert code == 0
