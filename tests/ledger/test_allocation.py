"""allocate_period: every active KPM credited once per period, from the program."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from switch.db.tables import Account, Kpm, Period, Transfer
from switch.ledger import postings
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import IdempotencyConflict, allocate_period, get_or_create_account
from tests.ledger.world import PERIOD_SEN, LedgerWorld


def test_credits_each_active_kpm_once_and_skips_inactive(ledger: LedgerWorld) -> None:
    first = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert (first.credited_count, first.already_count) == (3, 0)
    assert first.total_credited_sen == 3 * PERIOD_SEN
    assert [ledger.balance(w) for w in ledger.wallets] == [PERIOD_SEN] * 3
    assert ledger.balance(ledger.inactive_wallet) == 0
    assert ledger.balance(ledger.program) == -3 * PERIOD_SEN
    with ledger.db.transaction() as s:
        period = s.get(Period, "2026-11")
        assert period is not None and period.amount_sen == PERIOD_SEN


def test_second_run_credits_nothing(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    second = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert (second.credited_count, second.already_count, second.total_credited_sen) == (0, 3, 0)
    assert [ledger.balance(w) for w in ledger.wallets] == [PERIOD_SEN] * 3
    assert check_invariants(ledger.db).total_credited_sen == 3 * PERIOD_SEN


def test_unspent_balance_carries_over(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    ledger.buy("000001", ledger.wallets[0], 5_000_000)
    allocate_period(ledger.db, "2026-12", PERIOD_SEN)
    assert ledger.balance(ledger.wallets[0]) == 2 * PERIOD_SEN - 5_000_000
    assert ledger.balance(ledger.wallets[1]) == 2 * PERIOD_SEN


def test_kpm_activated_later_is_credited_on_rerun(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with ledger.db.transaction() as s:
        s.execute(update(Kpm).values(status="active"))
    again = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert (again.credited_count, again.already_count) == (1, 3)
    assert ledger.balance(ledger.inactive_wallet) == PERIOD_SEN


def test_same_period_with_another_amount_is_a_conflict(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with pytest.raises(IdempotencyConflict):
        allocate_period(ledger.db, "2026-11", PERIOD_SEN + 100)
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN


def test_inside_the_callers_session(ledger: LedgerWorld) -> None:
    with ledger.db.transaction() as s:
        program = s.get(Account, ledger.program)
        assert program is not None
        result = allocate_period(s, "2026-11", PERIOD_SEN)
        assert result.credited_count == 3
        assert program.balance_sen == -3 * PERIOD_SEN  # loaded objects stay in step


def test_rolled_back_with_the_callers_session(ledger: LedgerWorld) -> None:
    with pytest.raises(RuntimeError), ledger.db.transaction() as s:
        allocate_period(s, "2026-11", PERIOD_SEN)
        raise RuntimeError("the caller fails after allocating")
    assert ledger.balance(ledger.wallets[0]) == 0
    with ledger.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 0
        assert s.get(Period, "2026-11") is None


@pytest.mark.parametrize("amount", [0, -1, 1.5, 20_000_000.0])
def test_amount_must_be_positive_integer_sen(ledger: LedgerWorld, amount: object) -> None:
    with pytest.raises(AssertionError):
        allocate_period(ledger.db, "2026-11", amount)  # type: ignore[arg-type]


def test_many_kpm_across_chunks(ledger: LedgerWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postings, "ALLOCATION_CHUNK", 7)
    with ledger.db.transaction() as s:
        for n in range(40):
            wallet = get_or_create_account(s, "kpm_wallet", f"NIK:32730155079{n:05d}")
            s.add(Kpm(nik=f"32730155079{n:05d}", name="KPM", status="active" if n % 5 else
                      "inactive", wallet_account_id=wallet.id))
    first = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert first.credited_count == 3 + 32
    second = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert (second.credited_count, second.already_count) == (0, 35)
    assert ledger.balance(ledger.program) == -35 * PERIOD_SEN
