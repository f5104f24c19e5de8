"""The chaos checker (loadtest/chaos/checker.py) over hand-built histories and ledger
rows: a clean run passes, and each rule fails on the history that breaks it (and only
that rule, unless the breakage breaks two)."""

from __future__ import annotations

import pytest

from loadtest.chaos.checker import RULES, check, terminal_views
from loadtest.chaos.history import (
    ANSWERED,
    BAD_RESPONSE,
    LINK_DOWN,
    NOT_SENT,
    PURCHASE,
    REVERSAL,
    TIMEOUT,
    Exchange,
)
from loadtest.chaos.ledger_rows import Debit, LedgerRows

AMOUNT = 500_000
CREDITED = 20_000_000


def purchase(key: str, outcome: str = ANSWERED, rc: str | None = "00", *,
             signed: bool = True, at: float = 1.0) -> Exchange:
    if outcome != ANSWERED:
        rc, signed = None, False
    return Exchange(PURCHASE, key.split("/")[0], key, "0200", AMOUNT, at, at + 0.01, outcome,
                    rc, signed, "000000000001" if rc == "00" else None)


def reversal(key: str, outcome: str = ANSWERED, rc: str | None = "00", *,
             at: float = 2.0, mti: str = "0400") -> Exchange:
    if outcome != ANSWERED:
        rc = None
    return Exchange(REVERSAL, key.split("/")[0], key, mti, AMOUNT, at, at + 0.01, outcome, rc,
                    outcome == ANSWERED)


def rows(*debits: Debit, wallets: dict[int, int] | None = None,
         invariant: list[str] | None = None) -> LedgerRows:
    """Ledger rows whose money adds up: one wallet pays every standing debit."""
    standing = sum(d.amount_sen for d in debits if not d.reversed)
    return LedgerRows(list(debits), wallets if wallets is not None
                      else {1: CREDITED - standing}, standing, CREDITED, invariant or [])


def debit(key: str | None, n: int = 1, *, reversed_: bool = False,
          amount: int = AMOUNT) -> Debit:
    return Debit(n, key, amount, reversed_)


A, B, C, D, E = (f"EDC0000{n}/1202/00000{n}" for n in range(1, 6))


def clean_history() -> tuple[list[Exchange], LedgerRows]:
    """Every outcome a terminal can see, each matched by what the ledger must hold."""
    history = [
        purchase(A),                                  # approved: one debit
        purchase(B, TIMEOUT), reversal(B),            # debited, answer lost, reversed
        purchase(C, rc="91", signed=False),           # unsigned 91: reversed (no debit)
        reversal(C, rc="91", at=2.0), reversal(C, mti="0401", at=3.0),
        purchase(D, rc="51"),                         # declined, signed: nothing to undo
        purchase(E, NOT_SENT),                        # never left the terminal
    ]
    return history, rows(debit(A, 1), debit(B, 2, reversed_=True))


def rules_broken(history: list[Exchange], ledger: LedgerRows) -> set[str]:
    return {v.rule for v in check(history, ledger).violations}


def test_a_clean_run_passes() -> None:
    history, ledger = clean_history()
    verdict = check(history, ledger)
    assert verdict.ok, verdict.violations
    assert (verdict.standing_approvals, verdict.standing_debits) == (1, 1)
    views = terminal_views(history)
    assert views[C].reversed and not views[C].reversal_pending
    assert views[E].sent is False


#: (history, ledger rows, the rules they break)
CASES = [
    pytest.param([purchase(A)], rows(), {"approval-is-one-debit"}, id="approval-lost"),
    pytest.param([purchase(A)], rows(debit(A, 1), debit(A, 2)),
                 {"approval-is-one-debit"}, id="approval-debited-twice"),
    pytest.param([purchase(A)], rows(debit(A, amount=AMOUNT + 1)),
                 {"approval-is-one-debit"}, id="approval-wrong-amount"),
    pytest.param([purchase(A)], rows(debit(A, reversed_=True)),
                 {"approval-is-one-debit"}, id="approval-reversed-behind-its-back"),
    pytest.param([purchase(A, rc="05")], rows(debit(A)),
                 {"debit-seen-or-reversed"}, id="declined-but-debited"),
    pytest.param([purchase(A, rc="91")], rows(debit(A)),
                 {"debit-seen-or-reversed"}, id="signed-91-but-debited"),
    pytest.param([purchase(A, TIMEOUT), reversal(A)], rows(debit(A)),
                 {"debit-seen-or-reversed"}, id="reversal-answered-but-debit-stands"),
    pytest.param([purchase(A, LINK_DOWN)], rows(debit(A)),
                 {"debit-seen-or-reversed", "no-reversal-pending"}, id="no-answer-no-reversal"),
    pytest.param([purchase(A, NOT_SENT)], rows(debit(A)),
                 {"debit-seen-or-reversed"}, id="debited-but-never-sent"),
    pytest.param([], rows(debit(A)), {"debit-seen-or-reversed"}, id="phantom-debit"),
    pytest.param([], rows(debit(None)), {"debit-seen-or-reversed"}, id="debit-without-record"),
    pytest.param([purchase(A), reversal(A)], rows(debit(A)),
                 {"debit-seen-or-reversed"}, id="approval-reversed-by-terminal-debit-stands"),
    pytest.param([purchase(A, rc="91", signed=False)], rows(),
                 {"no-reversal-pending"}, id="unsigned-91-not-reversed"),
    pytest.param([purchase(A, BAD_RESPONSE), reversal(A, rc="91"), reversal(A, TIMEOUT)],
                 rows(), {"no-reversal-pending"}, id="reversal-only-answered-91"),
    pytest.param([purchase(A)], rows(debit(A), wallets={1: CREDITED}),
                 {"money-conserved"}, id="money-created"),
    pytest.param([purchase(A)],
                 rows(debit(A), wallets={1: CREDITED - AMOUNT + 100, 2: -100}),
                 {"no-negative-wallet"}, id="negative-wallet"),
    pytest.param([purchase(A)], rows(debit(A), invariant=["account 7: balance 1 != journal 0"]),
                 {"ledger-invariant"}, id="ledger-invariant"),
]


@pytest.mark.parametrize(("history", "ledger", "broken"), CASES)
def test_each_rule_fails_on_the_history_that_breaks_it(
        history: list[Exchange], ledger: LedgerRows, broken: set[str]) -> None:
    assert broken <= set(RULES)
    assert rules_broken(history, ledger) == broken


def test_every_rule_can_fail() -> None:
    """The table above reaches every rule the checker has."""
    reached: set[str] = set().union(*(case.values[2] for case in CASES))
    assert reached == set(RULES)


def test_the_same_approval_fails_its_rule_once_per_key() -> None:
    history = [purchase(A), purchase(B)]
    verdict = check(history, rows())
    assert [v.key for v in verdict.violations] == [A, B]
    assert "RRN 000000000001" in verdict.violations[0].detail


def test_gagal_tapi_saldo_terpotong_says_what_the_terminal_was_told() -> None:
    verdict = check([purchase(A, rc="05")], rows(debit(A)))
    assert "gagal tapi saldo terpotong" in verdict.violations[0].detail
    assert "RC 05" in verdict.violations[0].detail
