"""The invariant checker holds on a healthy ledger and detects each kind of corruption."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from switch.db.tables import RequestRecord, Transfer
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import allocate_period, post_transfer
from tests.ledger.world import PERIOD_SEN, TID, LedgerWorld


@pytest.fixture
def busy(ledger: LedgerWorld) -> LedgerWorld:
    """Two periods, three purchases, one of them reversed: every kind of row."""
    allocate_period(ledger.db, "2026-11", PERIOD_SEN)
    allocate_period(ledger.db, "2026-12", PERIOD_SEN)
    ledger.buy("000001", ledger.wallets[0], 1_000)
    ledger.buy("000002", ledger.wallets[1], 2_500_000)
    reversed_id = ledger.buy("000003", ledger.wallets[2], 3_000)
    ledger.reverse(reversed_id, "000003")
    return ledger


def test_holds_on_a_healthy_ledger(busy: LedgerWorld) -> None:
    report = check_invariants(busy.db)
    assert report.ok, report.summary()
    assert report.total_credited_sen == 6 * PERIOD_SEN
    assert report.wallets_sen + report.ewarong_sen == 6 * PERIOD_SEN
    assert report.program_sen == -6 * PERIOD_SEN
    assert report.ewarong_sen == 1_000 + 2_500_000
    assert (report.transfers, report.approved_purchases, report.reversals) == (6 + 3 + 1, 3, 1)
    assert "HOLDS" in report.summary() and "Rp 1.200.000" in report.summary()


def test_holds_on_an_empty_ledger(ledger: LedgerWorld) -> None:
    assert check_invariants(ledger.db).ok


CORRUPTIONS = [
    pytest.param("UPDATE accounts SET balance_sen = balance_sen + 1 WHERE id = 2",
                 "balance", id="balance-bumped"),
    pytest.param("UPDATE journal_entries SET amount_sen = amount_sen + 5 WHERE id = 1",
                 "do not balance", id="entry-changed"),
    pytest.param("DELETE FROM journal_entries WHERE id = 1", "do not balance",
                 id="entry-deleted"),
    pytest.param("UPDATE transfers SET amount_sen = amount_sen + 1 WHERE kind = 'purchase'",
                 "do not balance", id="transfer-amount-changed"),
    pytest.param("UPDATE request_records SET transfer_id = NULL WHERE kind = 'request'",
                 "no matching purchase debit", id="approved-without-transfer"),
    pytest.param("DELETE FROM request_records WHERE kind = 'request'",
                 "has no approved request", id="purchase-without-record"),
    pytest.param("UPDATE request_records SET response_code = '51' WHERE kind = 'request'",
                 "has no approved request", id="record-not-approved"),
    pytest.param("UPDATE request_records SET amount_sen = amount_sen + 1 "
                 "WHERE kind = 'request'", "no matching purchase debit",
                 id="record-amount-differs"),
    pytest.param("UPDATE transfers SET kind = 'allocation' WHERE kind = 'purchase'",
                 "moves money", id="purchase-relabelled"),
    pytest.param("UPDATE request_records SET amount_sen = 1 WHERE kind = 'reversal'",
                 "has no matching reversal", id="reversal-record-amount"),
]


@pytest.mark.parametrize(("corruption", "expected"), CORRUPTIONS)
def test_detects_corruption(busy: LedgerWorld, corruption: str, expected: str) -> None:
    busy.corrupted = True
    with busy.db.transaction() as s:
        s.execute(text(corruption))
    report = check_invariants(busy.db)
    assert not report.ok
    assert any(expected in v for v in report.violations), report.violations
    assert "BROKEN" in report.summary()


def test_detects_a_purchase_posted_without_its_record(busy: LedgerWorld) -> None:
    """An orphan debit: money left a wallet and no terminal was told 00."""
    busy.corrupted = True
    busy.buy("000004", busy.wallets[0], 500, record=False)
    report = check_invariants(busy.db)
    assert [v for v in report.violations if "has no approved request" in v], report.violations


def test_detects_a_record_approved_without_a_transfer(busy: LedgerWorld) -> None:
    busy.corrupted = True
    with busy.db.transaction() as s:
        s.add(RequestRecord(tid=TID, local_date="1123", key_date="20261123", stan="000099",
                            kind="request",
                            mti="0210", processing_code="000000", amount_sen=700,
                            request_hash="2" * 64, response_code="00", response_unit=b""))
    report = check_invariants(busy.db)
    assert any("no matching purchase debit" in v for v in report.violations)


def test_detects_a_reversal_of_an_allocation(busy: LedgerWorld) -> None:
    """Posted past reverse_transfer (which refuses it): invariant 6."""
    busy.corrupted = True
    with busy.db.transaction() as s:
        allocation = s.query(Transfer).filter_by(kind="allocation").first()
        assert allocation is not None
        post_transfer(s, idempotency_key="rev:alloc", kind="reversal",
                      debit_account_id=allocation.credit_account_id,
                      credit_account_id=allocation.debit_account_id,
                      amount_sen=allocation.amount_sen, reverses_transfer_id=allocation.id)
    report = check_invariants(busy.db)
    assert any("does not mirror a purchase" in v for v in report.violations)


def test_detects_a_negative_wallet(busy: LedgerWorld) -> None:
    """The schema's CHECK refuses it, so drop to a raw write with checks off."""
    busy.corrupted = True
    with busy.db.transaction() as s:
        s.execute(text("PRAGMA ignore_check_constraints = ON"))
        s.execute(text("INSERT INTO accounts (kind, owner_ref, balance_sen, created_at) "
                       "VALUES ('kpm_wallet', 'NIK:broken', -5, '2026-11-23')"))
        s.execute(text("PRAGMA ignore_check_constraints = OFF"))
    report = check_invariants(busy.db)
    assert any("is negative" in v for v in report.violations), report.violations
