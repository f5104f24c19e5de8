"""The six programme-rule scenarios (terminal_sim/rule_scenarios.py, docs/RULES.md)
against a real switch: the host in process behind its TCP transport, the simulator's
EDCs over loopback, on a fresh seeded SQLite database per test, once with every rule
declining and once with every rule only flagging.  Each test checks the RC and screen
the EDC got, the after-state (no money and no stock moved on a decline, the card's
status, the alert row), the money invariant and stock conservation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from switch.admin.demo import build_world, seed_database
from switch.clock import FixedClock, SystemClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Alert, AuditRecord
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants, unreversed_purchases
from switch.ledger.postings import allocate_period
from switch.protocol import codes
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim import rules_setup as setup
from terminal_sim.demo import rules_verdict
from terminal_sim.rule_scenarios import (
    RULE_SCENARIOS,
    RULES_SWITCH_MODES,
    RuleModes,
    RuleScenarios,
)
from terminal_sim.scenarios import Step
from terminal_sim.stock_check import stock_problems
from terminal_sim.world import SimWorld
from tests.transports.conftest import serving
from tests.world import PERIOD_SEN, HostWorld

FLAGGING = RuleModes(velocity="flag", velocity_max_cards=5, off_hours="flag", zoning="off",
                     price_cap="off")
MODES = {"decline": RULES_SWITCH_MODES, "flag": FLAGGING}
#: The RC of the step each scenario is about, by mode.
RULE_RC = {
    "dormant-card": {"decline": codes.RESTRICTED_CARD, "flag": codes.RESTRICTED_CARD},
    "velocity": {"decline": codes.LIMIT_EXCEEDED, "flag": codes.APPROVED},
    "off-hours": {"decline": codes.LIMIT_EXCEEDED, "flag": codes.APPROVED},
    "zoning": {"decline": codes.NOT_PERMITTED_TERMINAL, "flag": codes.APPROVED},
    "over-price": {"decline": codes.INVALID_AMOUNT, "flag": codes.APPROVED},
    "out-of-stock": {"decline": codes.OUT_OF_STOCK, "flag": codes.OUT_OF_STOCK},
}
#: The alert each scenario writes (rule, action by mode).
ALERTS = {
    "velocity": ("velocity", {"decline": "decline", "flag": "flag"}),
    "off-hours": ("off_hours", {"decline": "decline", "flag": "flag"}),
    "zoning": ("zoning", {"decline": "decline", "flag": "flag"}),
    "over-price": ("over_price", {"decline": "decline", "flag": "flag"}),
    "out-of-stock": ("low_stock", {"decline": "flag", "flag": "flag"}),
}


@dataclass
class RulesSwitch:
    db: Database
    runner: RuleScenarios
    mode: str


@pytest.fixture(params=sorted(MODES))
def rules_switch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RulesSwitch]:
    modes = MODES[request.param]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rules.db'}",
                        **{name: getattr(modes, name) for name in modes.__dataclass_fields__})
    keys = Keyring.from_settings(settings)
    db = open_database(settings.database_url)
    demo = build_world(kpm_count=30)
    seed_database(db, keys, demo)
    allocate_period(db, SystemClock().now().strftime("%Y-%m"), PERIOD_SEN)
    world = HostWorld(db, HostService(db, settings, SystemClock()), demo, FixedClock(), keys, {})
    with serving(world, "tcp", tmp_path) as linked:
        port = int(linked.url.rsplit(":", 1)[1])
        sim = SimWorld(demo, keys.imk_ac, "127.0.0.1", port, timeout_s=10.0)
        try:
            yield RulesSwitch(db, RuleScenarios(sim, db, keys, RuleModes.of(settings)),
                              request.param)
        finally:
            sim.close()
    report = check_invariants(db)
    rows, stock = stock_problems(db)
    db.dispose()
    assert report.ok, report.summary()
    assert rows > 0 and not stock, stock


def _rc_steps(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.expected in codes.RESPONSE_CODES and s.expected != "yes"]


def _alerts(db: Database) -> list[tuple[str, str, str | None, list[int]]]:
    with db.transaction(exclusive=False) as session:
        return [(r.rule, r.action, r.tid, json.loads(r.card_ids))
                for r in session.scalars(select(Alert).order_by(Alert.id))]


@pytest.mark.parametrize("name", list(RULE_SCENARIOS))
def test_rule_scenario(rules_switch: RulesSwitch, name: str) -> None:
    steps = RULE_SCENARIOS[name](rules_switch.runner)
    assert all(s.ok for s in steps), [s for s in steps if not s.ok]
    rc_steps = _rc_steps(steps)
    # The step the scenario is about: velocity's is the card over the limit (the last
    # RC before the checks), out-of-stock's the short basket (the first).
    rule_step = rc_steps[-1] if name == "velocity" else rc_steps[0]
    rc = RULE_RC[name][rules_switch.mode]
    assert rule_step.got == rc
    assert rule_step.display == codes.display_for(rc)
    # The after-state the scenario reports, and the database behind it.
    after = {s.what: s for s in steps if s.expected == "yes"}
    if rc != codes.APPROVED:
        assert "(unchanged)" in after["no money moved"].display
        assert rule_step.approved_purchase_sen == 0
    approved = [s.approved_purchase_sen for s in steps if s.approved_purchase_sen]
    assert unreversed_purchases(rules_switch.db) == (len(approved), sum(approved))
    tid = rules_switch.runner._terminal_for(name).tid
    alerts = _alerts(rules_switch.db)
    if name in ALERTS:
        rule, action = ALERTS[name][0], ALERTS[name][1][rules_switch.mode]
        assert [a for a in alerts if a[:3] == (rule, action, tid)], alerts
    if name == "dormant-card":
        assert "status active -> dormant" in after["card now dormant in the database"].display
        with rules_switch.db.transaction(exclusive=False) as session:
            actions = set(session.scalars(select(AuditRecord.action)))
        assert {"card.dormant", "sim.card_aged"} <= actions
    if name == "velocity":
        hit = [a for a in alerts if a[0] == "velocity"][-1]
        assert len(hit[3]) == MODES[rules_switch.mode].velocity_max_cards + 1
    if name == "out-of-stock":
        assert after["stock unchanged"].display == "KTG010 stock 1 -> 1"
        assert after["stock taken"].display == "KTG010 stock 11 -> 9"
    mid = rules_switch.runner._terminal_for(name).mid  # the scene is put back afterwards
    assert setup.hours(rules_switch.db, mid)[:2] == (None, None)
    assert setup.zones(rules_switch.db, mid) == []


def test_a_rule_step_not_as_expected_fails_the_demo(tmp_path: Path) -> None:
    """``make run`` exits non-zero when an EDC got another RC than the rule's."""
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    db = open_database(url)
    seed_database(db, Keyring.from_settings(Settings()), build_world(kpm_count=2))
    db.dispose()
    lines: list[str] = []
    wrong = {"velocity": [Step("card 6 within 10 min", codes.LIMIT_EXCEEDED, codes.APPROVED,
                               "TRANSAKSI BERHASIL")]}
    assert rules_verdict(url, wrong, lines.append) == 1
    assert "RULES VERDICT: FAILED" in lines[-1]
    assert rules_verdict(url, {}, lines.append) == 0
