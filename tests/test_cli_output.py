"""``bpnt-switch`` output (issue 16, docs/CONSOLE.md "The CLI"): ``--json`` is one JSON
document carrying the figures, a table is plain aligned text when stdout is not a
terminal (rich when it is), and progress goes to stderr only when stderr is a
terminal and never in ``--json`` mode; stdout never gets it."""

from __future__ import annotations

import io
import json
import sys
from datetime import date
from pathlib import Path

import pytest

from loadtest.make_kpm_csv import write_csv
from switch.cli_output import plain_table, print_table, progress, to_jsonable
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from tests.admin.rules_helpers import run_cli
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _json(world: HostWorld, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code, out, _ = run_cli(world, capsys, *argv, "--json")
    return code, json.loads(out)  # the whole of stdout is one document


def test_plain_table_aligns_and_a_terminal_gets_rich() -> None:
    text = plain_table(["mid", "units", "note"], [["EWARONG1", 5, "LOW"], ["E2", 12345, ""]])
    assert text.splitlines() == ["mid       units  note",
                                 "EWARONG1      5  LOW",
                                 "E2        12345"]
    plain = io.StringIO()
    print_table(["mid", "units"], [["E2", 7]], file=plain)
    assert plain.getvalue() == "mid  units\nE2       7\n"
    empty = io.StringIO()
    print_table(["mid"], [], empty="(none)", file=empty)
    assert empty.getvalue() == "(none)\n"
    tty = Terminal()
    print_table(["mid", "units"], [["E2", 7]], file=tty)
    assert "┃" in tty.getvalue() or "│" in tty.getvalue()  # a rich table's borders
    assert "E2" in tty.getvalue()


def test_progress_only_on_a_terminal_and_never_when_disabled(
        capsys: pytest.CaptureFixture[str]) -> None:
    tty, pipe = Terminal(), io.StringIO()
    with progress("work", file=tty) as advance:
        advance(5, 10)
        advance(10, 10)
    assert "work" in tty.getvalue() and "10/10" in tty.getvalue()
    with progress("work", file=pipe) as advance:
        advance(1, 2)
    quiet = Terminal()
    with progress("work", enabled=False, file=quiet) as advance:
        advance(1, 2)
    assert pipe.getvalue() == "" and quiet.getvalue() == ""
    assert capsys.readouterr().out == ""
    with pytest.raises(TypeError):
        to_jsonable({"key": b"\x00"})
    assert to_jsonable({"d": date(2026, 11, 25), "t": (1, 2)}) == {"d": "2026-11-25",
                                                                   "t": [1, 2]}


def test_json_of_the_read_commands_carries_the_figures(
        world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    edc, card = world.edc_with_card()
    edc.logon()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    day = world.clock.now().date().isoformat()

    code, check = _json(world, capsys, "check")
    assert code == 0 and check["ok"] is True and check["approved_purchases"] == 1
    assert check["ewarong_sen"] == RICE.total_sen
    code, verified = _json(world, capsys, "audit", "verify")
    assert code == 0 and verified["ok"] is True and verified["records"] > 0
    code, shown = _json(world, capsys, "audit", "show", "--last", "2")
    assert code == 0 and len(shown["records"]) == 2
    assert isinstance(shown["records"][0]["detail"], dict)
    # a record is named by chain and seq (several chains on PostgreSQL, docs/DATABASE.md)
    assert all(isinstance(r["chain"], int) and r["chain"] >= 1 for r in shown["records"])
    code, text, _ = run_cli(world, capsys, "audit", "show", "--last", "1")
    header, row = text.splitlines()
    assert header.split()[:3] == ["chain", "seq", "at"]
    assert row.split()[:2] == [str(shown["records"][-1]["chain"]),
                               str(shown["records"][-1]["seq"])]
    code, revision = _json(world, capsys, "db", "current")
    assert code == 0 and revision["revision"] == "0005"
    code, terminals = _json(world, capsys, "terminals")
    assert code == 0 and terminals == {"terminals": []}
    code, stock = _json(world, capsys, "stock", "show", "--ewarong", world.terminal().mid)
    rice = next(r for r in stock["rows"] if r["item_code"] == "BRS005")
    assert code == 0 and rice["units"] == 100_000 - 1 and rice["low"] is False

    code, rules = _json(world, capsys, "rules", "show", "--mid", world.terminal().mid)
    assert code == 0 and [r["mid"] for r in rules["ewarongs"]] == [world.terminal().mid]
    code, recon = _json(world, capsys, "report", "reconciliation", "--date", day)
    assert code == 0 and recon["ok"] is True and recon["date"] == day
    [ewarong] = [r for r in recon["rows"] if r["section"] == "ewarong"]
    assert (ewarong["purchase_count"], ewarong["purchase_sen"], ewarong["net_sen"]) == (
        1, RICE.total_sen, RICE.total_sen)
    code, undelivered = _json(world, capsys, "report", "undelivered", "--date", day,
                              "--hours", "0")
    assert code == 0 and [(line["amount_sen"], line["pan_masked"])
                          for line in undelivered["data"]["lines"]] == [
        (RICE.total_sen, card.pan[:6] + "******" + card.pan[-4:])]
    code, stocked = _json(world, capsys, "report", "stock", "--date", day)
    assert code == 0 and stocked["exit_code"] == 0
    assert {line["item"]: line["sold_day"] for line in stocked["data"]["lines"]}["BRS005"] == 1
    for out in (json.dumps(d) for d in (check, shown, stock, recon, undelivered, stocked)):
        assert card.pan not in out


def test_change_commands_json_and_progress_on_a_terminal_stderr_only(
        world: HostWorld, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    code, out, _ = run_cli(world, capsys, "allocate", "--period", "2026-12",
                           "--amount-sen", str(PERIOD_SEN))
    credited = int(out.split("credited ")[1].split()[0])
    assert code == 0 and out.splitlines() == [
        f"period 2026-12: credited {credited} KPM, 0 already credited, "
        f"total {credited * PERIOD_SEN} sen"]
    assert "allocate 2026-12" in tty.getvalue() and f"{credited}/{credited}" in tty.getvalue()

    tty.seek(0)
    tty.truncate()
    code, result = _json(world, capsys, "allocate", "--period", "2026-12", "--amount-sen",
                         str(PERIOD_SEN))
    assert code == 0 and result == {"period_code": "2026-12", "credited_count": 0,
                                    "already_count": credited, "total_credited_sen": 0,
                                    "amount_sen": PERIOD_SEN}
    assert tty.getvalue() == ""  # no progress in --json mode

    path = tmp_path / "kpm.csv"
    write_csv(path, 30, first_serial=7000)
    code, out, _ = run_cli(world, capsys, "import-kpm", str(path), "--actor", "ops")
    assert code == 0 and "import kpm.csv" in tty.getvalue() and "import kpm.csv" not in out
    assert "━" not in out and "\x1b" not in out

    tty.seek(0)
    tty.truncate()
    code, out, _ = run_cli(world, capsys, "dormancy", "run", "--days", "3650", "--actor", "ops")
    assert code == 0 and out.startswith("0 cards made dormant") and "dormancy" in tty.getvalue()

    code, done = _json(world, capsys, "dormancy", "run", "--days", "3650", "--actor", "ops")
    assert code == 0 and done["dormant"] == 0 and done["days"] == 3650
    code, received = _json(world, capsys, "stock", "receive", "--ewarong",
                           world.terminal().mid, "--item", "BRS005", "--units", "5",
                           "--reference", "DN-77", "--actor", "ops")
    assert code == 0 and received["added"] is True and received["quantity_after"] == 100_005
    pan = world.card().pan
    code, blocked = _json(world, capsys, "card-status", "--pan", pan, "--status", "blocked",
                          "--reason", "test", "--actor", "ops")
    assert code == 0 and blocked["status"] == "blocked" and pan not in json.dumps(blocked)
