"""The ledger on a real SQLite file: postings, allocation, reversal, invariant checker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from switch.ledger.database import Database, open_database
from switch.ledger.invariants import check_invariants
from switch.ledger.models import Account, Kpm, RequestRecord
from switch.ledger.postings import (
    IdempotencyConflict,
    InsufficientFunds,
    allocate_period,
    get_or_create_account,
    post_transfer,
    reverse_transfer,
)

PERIOD_SEN = 20_000_000


@dataclass
class Ledger:
    db: Database
    wallets: list[int]
    payable: int


def _kpm(db: Database, nik: str, status: str = "active") -> int:
    with db.transaction() as s:
        wallet = get_or_create_account(s, "kpm_wallet", f"NIK:{nik}")
        s.add(Kpm(nik=nik, name="KPM", status=status, wallet_account_id=wallet.id))
        return wallet.id


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    db = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    wallets = [_kpm(db, f"327301450790000{i}") for i in range(1, 4)]
    _kpm(db, "3273014507900009", status="inactive")
    with db.transaction() as s:
        payable = get_or_create_account(s, "ewarong_payable", "EWARONG00000001").id
    yield Ledger(db, wallets, payable)
    report = check_invariants(db)
    db.dispose()
    assert report.ok, report.summary()


def _balance(db: Database, account_id: int) -> int:
    with db.transaction() as s:
        account = s.get(Account, account_id)
        assert account is not None
        return account.balance_sen


def _buy(db: Database, key: str, wallet: int, payable: int, amount_sen: int) -> int:
    """A purchase as the host posts it: transfer plus its approved request record."""
    with db.transaction() as s:
        transfer = post_transfer(s, idempotency_key=key, kind="purchase", debit_account_id=wallet,
                                 credit_account_id=payable, amount_sen=amount_sen)
        s.add(RequestRecord(tid="EDC00001", local_date="1123", stan=key[-6:], kind="request",
                            mti="0210", processing_code="000000", amount_sen=amount_sen,
                            request_hash="x", response_code="00", response_unit=b"",
                            transfer_id=transfer.id))
        return transfer.id


def test_allocation_credits_each_active_kpm_once(ledger: Ledger) -> None:
    first = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    second = allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    assert (first.credited_count, first.already_count) == (3, 0)
    assert (second.credited_count, second.already_count) == (0, 3)
    assert [_balance(ledger.db, w) for w in ledger.wallets] == [PERIOD_SEN] * 3
    report = check_invariants(ledger.db)
    assert report.total_credited_sen == 3 * PERIOD_SEN


def test_unspent_balance_carries_over(ledger: Ledger) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    _buy(ledger.db, "pur:EDC00001:1123:000001", ledger.wallets[0], ledger.payable, 5_000_000)
    allocate_period(ledger.db, "2026-12", PERIOD_SEN)
    assert _balance(ledger.db, ledger.wallets[0]) == 2 * PERIOD_SEN - 5_000_000


def test_transfer_is_idempotent_and_conflicts_on_other_content(ledger: Ledger) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    first = _buy(ledger.db, "pur:EDC00001:1123:000001", ledger.wallets[0], ledger.payable, 700)
    with ledger.db.transaction() as s:
        again = post_transfer(s, idempotency_key="pur:EDC00001:1123:000001", kind="purchase",
                              debit_account_id=ledger.wallets[0],
                              credit_account_id=ledger.payable, amount_sen=700)
        assert again.id == first
    with pytest.raises(IdempotencyConflict), ledger.db.transaction() as s:
        post_transfer(s, idempotency_key="pur:EDC00001:1123:000001", kind="purchase",
                      debit_account_id=ledger.wallets[0], credit_account_id=ledger.payable,
                      amount_sen=701)
    assert _balance(ledger.db, ledger.wallets[0]) == PERIOD_SEN - 700


def test_insufficient_funds_writes_nothing(ledger: Ledger) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    with pytest.raises(InsufficientFunds):
        _buy(ledger.db, "pur:EDC00001:1123:000009", ledger.wallets[1], ledger.payable,
             PERIOD_SEN + 1)
    assert _balance(ledger.db, ledger.wallets[1]) == PERIOD_SEN
    assert _balance(ledger.db, ledger.payable) == 0


def test_float_amounts_are_refused(ledger: Ledger) -> None:
    with pytest.raises(AssertionError), ledger.db.transaction() as s:
        post_transfer(s, idempotency_key="k", kind="allocation", debit_account_id=ledger.payable,
                      credit_account_id=ledger.wallets[0], amount_sen=10.0)  # type: ignore[arg-type]


def test_reversal_restores_exactly_once(ledger: Ledger) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    purchase_id = _buy(ledger.db, "pur:EDC00001:1123:000002", ledger.wallets[2], ledger.payable,
                       4_200_000)
    reversal_ids = set()
    for _ in range(3):
        with ledger.db.transaction() as s:
            from switch.ledger.models import Transfer

            original = s.get(Transfer, purchase_id)
            assert original is not None
            reversal_ids.add(reverse_transfer(s, original, idempotency_key="rev:1").id)
    assert len(reversal_ids) == 1
    assert _balance(ledger.db, ledger.wallets[2]) == PERIOD_SEN
    assert _balance(ledger.db, ledger.payable) == 0


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        ("UPDATE accounts SET balance_sen = balance_sen + 1 WHERE kind = 'kpm_wallet'",
         "balance"),
        ("UPDATE journal_entries SET amount_sen = amount_sen + 5 WHERE id = 1", "balance"),
        ("UPDATE request_records SET transfer_id = NULL", "no matching purchase debit"),
        ("UPDATE request_records SET response_code = '51'", "has no approved request"),
    ],
)
def test_checker_detects_corruption(ledger: Ledger, corruption: str, expected: str) -> None:
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    _buy(ledger.db, "pur:EDC00001:1123:000003", ledger.wallets[0], ledger.payable, 1_000)
    assert check_invariants(ledger.db).ok
    with ledger.db.transaction() as s:
        s.execute(text(corruption))
    report = check_invariants(ledger.db)
    assert not report.ok
    assert any(expected in v for v in report.violations), report.violations
    # Undo, so the fixture's own check sees a consistent ledger again.
    _rebuild(ledger.db)


def _rebuild(db: Database) -> None:
    with db.transaction() as s:
        for statement in (
            "DELETE FROM request_records", "DELETE FROM journal_entries",
            "DELETE FROM transfers", "UPDATE accounts SET balance_sen = 0",
        ):
            s.execute(text(statement))


@given(ops=st.lists(st.tuples(st.sampled_from(["alloc", "buy", "reverse"]),
                              st.integers(0, 2), st.integers(1, 30_000_000)), max_size=25))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_operations_keep_the_invariant(ledger: Ledger, ops: list[tuple[str, int, int]]
                                              ) -> None:
    _rebuild(ledger.db)
    bought: list[int] = []
    for n, (op, who, amount) in enumerate(ops):
        if op == "alloc":
            allocate_period(ledger.db, f"2027-{n % 12 + 1:02d}", amount)
        elif op == "buy":
            with contextlib.suppress(InsufficientFunds):
                bought.append(_buy(ledger.db, f"pur:EDC00001:1123:{n:06d}", ledger.wallets[who],
                                   ledger.payable, amount))
        elif bought:
            from switch.ledger.models import Transfer

            with ledger.db.transaction() as s:
                original = s.get(Transfer, bought[who % len(bought)])
                assert original is not None
                reverse_transfer(s, original, idempotency_key=f"rev:{original.id}")
        report = check_invariants(ledger.db)
        assert report.ok, report.summary()
    _rebuild(ledger.db)
