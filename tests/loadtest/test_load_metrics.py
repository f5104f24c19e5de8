"""``make load``'s end-of-run comparison of ``/metrics`` with Locust (issue 16)."""

from __future__ import annotations

from loadtest.load_metrics import end_problems

LOCUST = {"logon": 6, "balance": 13, "purchase": 116, "reversal": 5}


def test_equal_counts_pass() -> None:
    assert end_problems(LOCUST, dict(LOCUST)) == []


def test_one_extra_exchange_fails_without_an_interrupted_transaction() -> None:
    switch = dict(LOCUST, purchase=117)
    assert end_problems(LOCUST, switch) == ["purchase: Locust 116, switch 117"]


def test_an_interrupted_transaction_explains_one_extra_exchange() -> None:
    """A user killed after sending its 0200: the switch counted it, Locust never did
    (the CI run of 2026-12-02: Locust 116, switch 117, 1 interrupted)."""
    assert end_problems(LOCUST, dict(LOCUST, purchase=117), interrupted=1) == []


def test_interrupted_transactions_explain_no_more_than_their_number() -> None:
    switch = dict(LOCUST, purchase=117, reversal=6)
    assert end_problems(LOCUST, switch, interrupted=1) == [
        "purchase: Locust 116, switch 117", "reversal: Locust 5, switch 6"]
    assert end_problems(LOCUST, switch, interrupted=2) == []


def test_the_switch_never_counts_fewer_whatever_was_interrupted() -> None:
    switch = dict(LOCUST, purchase=115, reversal=6)
    assert end_problems(LOCUST, switch, interrupted=5) == [
        "purchase: Locust 116, switch 115", "reversal: Locust 5, switch 6"]


def test_requests_of_no_locust_type_always_fail() -> None:
    assert end_problems(LOCUST, dict(LOCUST, other=1), interrupted=3) == [
        "switch: 1 requests of no Locust type"]
