"""Issue 6 acceptance: the same purchase / decline / duplicate / reversal tests pass over
TCP, MQTT and serial.  The tests are the host suite's own (tests/host), run with the
``linked`` fixture, whose ``world.edc()`` reaches the host over a real transport; the
named simulator scenarios run over each link the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from terminal_sim.scenarios import SCENARIOS, Scenarios
from terminal_sim.world import SimWorld
from tests.host import test_declines as declines
from tests.host import test_idempotency as idempotency
from tests.transports.conftest import LINK_KINDS, serving
from tests.world import HostWorld

CASES: dict[str, Callable[[HostWorld], None]] = {
    "purchase": declines.test_approved_purchase_debits_exactly_the_basket,
    "balance": declines.test_balance_inquiry_reports_the_wallet,
    "decline-blocked-card": functools.partial(
        declines.test_card_and_kpm_declines, label="blocked", rc="62", display="KARTU DIBLOKIR"),
    "decline-goods": declines.test_item_outside_food_categories_is_57,
    "decline-amount": declines.test_basket_sum_not_amount_is_13,
    "decline-balance": declines.test_insufficient_balance_is_51_with_balance,
    "decline-terminal": functools.partial(declines.test_terminal_declines_are_58,
                                          label="inactive"),
    "wrong-pin-3x": declines.test_third_wrong_pin_is_75_and_blocks_the_card,
    "duplicate-decline": idempotency.test_duplicate_of_a_decline_replays_the_decline,
    "duplicate-94": idempotency.test_same_key_different_amount_is_94_and_moves_no_money,
    "reversal-repeated": idempotency.test_reversal_restores_exactly_once_under_repetition,
    "timeout-reversal":
        idempotency.test_timeout_leaves_a_pending_reversal_that_restores_the_balance,
    "reversal-first": idempotency.test_reversal_before_original_declines_the_late_original,
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_host_suite_over_every_link(linked: HostWorld, case: str) -> None:
    CASES[case](linked)


@pytest.mark.parametrize("kind", LINK_KINDS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_simulator_scenarios_over_every_link(
    world: HostWorld, tmp_path: Path, request: pytest.FixtureRequest, kind: str, scenario: str,
) -> None:
    broker_url = request.getfixturevalue("broker").url if kind == "mqtt" else None
    with serving(world, kind, tmp_path, broker_url) as linked:
        sim = SimWorld(world.demo, world.keys.imk_ac, "unused", 0, timeout_s=10.0,
                       link_url=linked.url if kind != "serial" else None)
        if kind == "serial":
            sim._shared_link = linked.serial_link  # the test's pty line, already open
            sim.link_url = "serial:(test pty)"
        try:
            steps = SCENARIOS[scenario](Scenarios(sim))
        finally:
            sim.close()
    failed = [f"{s.what}: expected {s.expected}, got {s.got}" for s in steps if not s.ok]
    assert not failed, failed
