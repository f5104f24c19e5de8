"""``make stock-bench``, small and short, on both engines: stock = received - sold exactly.

8 terminals of one e-warong buy one item open-loop at 100/s for 3 s (300 purchases)
against 200 units received, through a real ``bpnt-switch serve`` process, so the
shelf runs out a third of the way from the end and ST is answered under load too.
PostgreSQL: tests/postgres/pg.py's rule (skipped without a server, failed under CI).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loadtest.bench_load import PointStats
from loadtest.stock_bench import PG_BASE_URL, Args, StockFacts, judge, run
from switch.ledger.invariants import InvariantReport

PURCHASES = 300
RECEIVED = 200


def short_args(engine: str, out: Path) -> Args:
    pg_url = PG_BASE_URL
    if engine == "postgresql":
        from tests.postgres.pg import SERVER_URL, require_postgres

        require_postgres()
        url = make_url(SERVER_URL)
        pg_url = url.render_as_string(hide_password=False).removesuffix(f"/{url.database}")
    return Args(engine=engine, terminals=8, switches=1, rate=100.0, duration_s=3.0,
                item="BRS005", units=1, received=RECEIVED, kpm=0, connections=32,
                timeout_s=20.0, pg_url=pg_url, out=out, max_total_s=120.0)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_stock_is_received_minus_sold_exactly(engine: str, tmp_path: Path) -> None:
    lines: list[str] = []
    result = run(short_args(engine, tmp_path), out=lines.append)
    log = "\n".join(lines)
    assert result.ok, log
    facts, point = result.facts, result.point
    assert point.scheduled == PURCHASES and not point.errors, log
    # the shelf ran out: every unit sold, the rest answered ST, nothing else declined
    assert facts.received == RECEIVED
    assert facts.sold == RECEIVED == point.approved == facts.approved == facts.debits, log
    assert facts.left == 0, log
    assert point.declines == Counter({"ST": PURCHASES - RECEIVED}), log
    assert facts.records_by_rc == Counter({"00": RECEIVED, "ST": PURCHASES - RECEIVED})
    assert facts.approved_after_first_st == 0, log
    # the shelf crossed the low-stock threshold once, on the way down
    assert facts.alerts["low_stock/flag"] == 1, log
    assert result.invariants.ok, log
    assert [label.split(" (")[0] for label, _ in result.phases] == \
        ["shelf stocked", "shelf empty"], log
    assert "VERDICT: stock bench passed" in log


@pytest.mark.slow
def test_a_unit_sold_but_not_taken_from_the_shelf_fails_the_run(tmp_path: Path) -> None:
    """The same run, with one unit put back on the shelf behind the switch's back after
    the drain (what a switch that sold a unit without decrementing would leave)."""

    def put_one_back(url: str) -> None:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE stock SET quantity = quantity + 1"))
        engine.dispose()

    lines: list[str] = []
    args = replace(short_args("sqlite", tmp_path), rate=50.0, duration_s=2.0, received=60)
    result = run(args, out=lines.append, before_check=put_one_back)
    log = "\n".join(lines)
    assert not result.ok, log
    assert any("stock 1 != received 60 - sold 60" in p for p in result.problems), log
    assert any("ST answers but the shelf still holds 1" in p for p in result.problems), log
    assert "VERDICT: stock bench FAILED" in log


def _point(approved: int, st: int) -> PointStats:
    return PointStats(rate=100.0, duration_s=3.0, scheduled=approved + st, sent=approved + st,
                      approved=approved, approved_per_s=0.0, declines=Counter({"ST": st}))


def test_judge_refuses_each_broken_fact(tmp_path: Path) -> None:
    args = short_args("sqlite", tmp_path)
    good = StockFacts(received=200, left=0, sold=200, approved=200,
                      records_by_rc=Counter({"00": 200, "ST": 100}), debits=200)
    ok = InvariantReport()
    assert judge(args, _point(200, 100), good, ok) == []
    cases = {
        "sold 199 units": replace(good, sold=199, left=1),  # a 00 that took nothing
        "stock 5 != received": replace(good, left=5),
        "ST records": replace(good, records_by_rc=Counter({"00": 200, "ST": 99})),
        "purchase debits 199": replace(good, debits=199),
        "do not name the e-warong": replace(good, misattributed=1),
    }
    for needle, facts in cases.items():
        problems = judge(args, _point(200, 100), facts, ok)
        assert any(needle in p for p in problems), (needle, problems)
    broken = InvariantReport(violations=["x"])
    assert "the money invariant does not hold" in judge(args, _point(200, 100), good, broken)
    assert any("no answer" in p for p in judge(
        args, replace(_point(199, 100), scheduled=300, errors=Counter({"timeout": 1})),
        good, ok))
