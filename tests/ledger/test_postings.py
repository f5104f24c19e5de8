"""post_transfer and reverse_transfer: idempotent, never overdrawn, reversed at most once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from switch.db.tables import Account, JournalEntry, Transfer
from switch.ledger.postings import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    allocate_period,
    post_transfer,
    reverse_transfer,
)
from tests.ledger.world import PERIOD_SEN, TID, LedgerWorld


def _count(ledger: LedgerWorld, model: type[Transfer] | type[JournalEntry]) -> int:
    with ledger.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_purchase_moves_money_and_writes_two_entries(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    transfer_id = ledger.buy("000001", ledger.wallets[0], 700)
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN - 700
    assert ledger.balance(ledger.payable) == 700
    with ledger.db.transaction() as s:
        entries = s.scalars(select(JournalEntry).where(JournalEntry.transfer_id == transfer_id))
        assert sorted((e.account_id, e.amount_sen) for e in entries) == sorted(
            [(ledger.wallets[0], -700), (ledger.payable, 700)])


def test_same_key_same_content_returns_the_first(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    first = ledger.buy("000001", ledger.wallets[0], 700)
    before = _count(ledger, JournalEntry)
    with ledger.db.transaction() as s:
        again = post_transfer(s, idempotency_key=f"pur:{TID}:1123:000001", kind="purchase",
                              debit_account_id=ledger.wallets[0],
                              credit_account_id=ledger.payable, amount_sen=700, memo="retry")
        assert again.id == first
    assert _count(ledger, JournalEntry) == before
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN - 700


@pytest.mark.parametrize("change", [
    {"amount_sen": 701}, {"debit": 1}, {"kind": "allocation"},
])
def test_same_key_other_content_is_a_conflict(ledger: LedgerWorld, change: dict[str, object]
                                              ) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    ledger.buy("000001", ledger.wallets[0], 700)
    debit = ledger.wallets[int(str(change.get("debit", 0)))]
    kind = str(change.get("kind", "purchase"))
    amount = int(str(change.get("amount_sen", 700)))
    before = _count(ledger, JournalEntry)
    with pytest.raises(IdempotencyConflict), ledger.db.transaction() as s:
        post_transfer(s, idempotency_key=f"pur:{TID}:1123:000001", kind=kind,
                      debit_account_id=debit if kind == "purchase" else ledger.program,
                      credit_account_id=ledger.payable if kind == "purchase" else debit,
                      amount_sen=amount)
    assert _count(ledger, JournalEntry) == before
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN - 700


def test_insufficient_funds_writes_nothing(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    transfers = _count(ledger, Transfer)
    with pytest.raises(InsufficientFunds):
        ledger.buy("000009", ledger.wallets[1], PERIOD_SEN + 1)
    assert ledger.balance(ledger.wallets[1]) == PERIOD_SEN
    assert ledger.balance(ledger.payable) == 0
    assert _count(ledger, Transfer) == transfers


def test_a_refusal_leaves_the_callers_transaction_clean(ledger: LedgerWorld) -> None:
    """The host may record the decline (RC 51) in the same transaction."""
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with ledger.db.transaction() as s:
        with pytest.raises(InsufficientFunds):
            post_transfer(s, idempotency_key="pur:x", kind="purchase",
                          debit_account_id=ledger.wallets[1],
                          credit_account_id=ledger.payable, amount_sen=PERIOD_SEN + 1)
        post_transfer(s, idempotency_key="pur:y", kind="purchase",
                      debit_account_id=ledger.wallets[1], credit_account_id=ledger.payable,
                      amount_sen=PERIOD_SEN)
        assert s.scalar(select(Account.balance_sen).where(Account.id == ledger.wallets[1])) == 0
        assert s.scalar(select(func.count()).select_from(Transfer)) == 3 + 1
        s.rollback()  # no request record for these: keep the invariant for the fixture
    assert ledger.balance(ledger.wallets[1]) == PERIOD_SEN


def test_exact_balance_may_be_spent(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    ledger.buy("000001", ledger.wallets[2], PERIOD_SEN)
    assert ledger.balance(ledger.wallets[2]) == 0
    with pytest.raises(InsufficientFunds):
        ledger.buy("000002", ledger.wallets[2], 1)


@pytest.mark.parametrize("amount", [0, -5, 10.0, True])
def test_amount_must_be_positive_integer_sen(ledger: LedgerWorld, amount: object) -> None:
    with pytest.raises(AssertionError), ledger.db.transaction() as s:
        post_transfer(s, idempotency_key="k", kind="allocation", debit_account_id=ledger.program,
                      credit_account_id=ledger.wallets[0], amount_sen=amount)  # type: ignore[arg-type]


def test_unknown_account_is_refused(ledger: LedgerWorld) -> None:
    with pytest.raises(LedgerError), ledger.db.transaction() as s:
        post_transfer(s, idempotency_key="k", kind="allocation", debit_account_id=ledger.program,
                      credit_account_id=9999, amount_sen=1)
    assert ledger.balance(ledger.program) == 0


def test_reversal_restores_exactly_once(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    purchase = ledger.buy("000002", ledger.wallets[2], 4_200_000)
    reversal = ledger.reverse(purchase, "000002")
    again = set()
    for key in ("rev:again", "rev:other-key", f"rev:{TID}:1123:000002"):
        with ledger.db.transaction() as s:
            original = s.get(Transfer, purchase)
            assert original is not None
            again.add(reverse_transfer(s, original, idempotency_key=key).id)
    assert again == {reversal}
    assert ledger.balance(ledger.wallets[2]) == PERIOD_SEN
    assert ledger.balance(ledger.payable) == 0


def test_only_a_purchase_can_be_reversed(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with pytest.raises(LedgerError), ledger.db.transaction() as s:
        allocation = s.scalars(select(Transfer).where(Transfer.kind == "allocation")).first()
        assert allocation is not None
        reverse_transfer(s, allocation, idempotency_key="rev:alloc")
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN


def test_loaded_accounts_follow_their_rows(ledger: LedgerWorld) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with ledger.db.transaction() as s:
        wallet = s.get(Account, ledger.wallets[0])
        assert wallet is not None
        post_transfer(s, idempotency_key="pur:z", kind="purchase",
                      debit_account_id=wallet.id, credit_account_id=ledger.payable,
                      amount_sen=300)
        assert wallet.balance_sen == PERIOD_SEN - 300
        s.rollback()


def test_concurrent_spenders_cannot_overdraw(ledger: LedgerWorld) -> None:
    """Eight threads each try to spend 60% of one wallet: exactly one succeeds
    (BEGIN IMMEDIATE on SQLite; the conditional UPDATE on PostgreSQL)."""
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def spend(n: int) -> None:
        start.wait()
        try:
            ledger.buy(f"{n:06d}", ledger.wallets[0], PERIOD_SEN * 6 // 10)
            result = "ok"
        except InsufficientFunds:
            result = "51"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["51"] * 7 + ["ok"]
    assert ledger.balance(ledger.wallets[0]) == PERIOD_SEN * 4 // 10
