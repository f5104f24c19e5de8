"""A batch's purchase postings (``post_postings``, written through ``switch.db.bulk``:
``executemany`` on SQLite, one JSON-recordset statement per table on PostgreSQL)
leave the same ledger on both engines, refuse a wallet that would go below zero,
and meet a repeated idempotency key with the unique-key error the host treats as
a lost race."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.sql import pipeline, reserve_ids, submit_sql
from switch.db.tables import Account, JournalEntry, RequestRecord, Transfer, utcnow
from switch.host.service import _lost_a_race
from switch.host.store import INSERT_RECORDS
from switch.ledger.invariants import check_invariants
from switch.ledger.money import Posting
from switch.ledger.postings import (
    InsufficientFunds,
    get_or_create_account,
    post_postings,
    post_transfer,
    program_account,
    submit_postings,
)

FUNDED_SEN = 100_000


@pytest.fixture
def funded(any_url: str) -> Iterator[tuple[Database, list[int], int]]:
    """Three wallets holding ``FUNDED_SEN`` each and one e-warong payable account."""
    db = open_database(any_url)
    with db.transaction() as s:
        program = program_account(s).id
        wallets = [get_or_create_account(s, "kpm_wallet", f"NIK:{n}").id for n in range(3)]
        payable = get_or_create_account(s, "ewarong_payable", "EWARONG00000001").id
    for n, wallet in enumerate(wallets):
        with db.transaction() as s:
            post_transfer(s, idempotency_key=f"alloc:{n}", kind="allocation",
                          debit_account_id=program, credit_account_id=wallet,
                          amount_sen=FUNDED_SEN)
    yield db, wallets, payable
    report = check_invariants(db)
    db.dispose()
    assert report.ok, report.summary()


def _postings(db: Database, spends: list[tuple[int, int]], payable: int,
              prefix: str = "pur") -> list[Posting]:
    with db.transaction() as s:
        ids = reserve_ids(s.connection(), "transfers", len(spends))
    return [Posting(tid, f"{prefix}:EDC00001:1201:{n:06d}", "purchase", wallet, payable, amount,
                    f"EDC00001 memo {n}")
            for n, (tid, (wallet, amount)) in enumerate(zip(ids, spends, strict=True))]


def _post_with_records(db: Database, postings: list[Posting]) -> None:
    """The postings and their approved 0210 records (as a run writes them), one
    transaction: the invariant wants a record for every purchase transfer."""
    with db.transaction() as s:
        connection = s.connection()
        post_postings(connection, postings, utcnow())
        ids = reserve_ids(connection, "request_records", len(postings))
        INSERT_RECORDS.submit(connection, [
            {"id": rid, "tid": "EDC00001", "local_date": "1201", "key_date": "20261201",
             "invoice": None, "original_record_id": None, "card_id": None, "basket": None,
             "stock_ewarong_id": None, "stan": p.idempotency_key[-6:],
             "kind": "request", "mti": "0210",
             "processing_code": "000000", "amount_sen": p.amount_sen, "request_hash": "0" * 64,
             "response_code": "00", "response_unit": b"\x02\x10", "transfer_id": p.transfer_id,
             "created_at": utcnow()} for rid, p in zip(ids, postings, strict=True)])


def _with(posting: Posting, **changes: str) -> Posting:
    return dataclasses.replace(posting, **changes)  # type: ignore[arg-type]


def _balances(db: Database, accounts: list[int]) -> list[int]:
    with db.transaction() as s:
        return [s.get_one(Account, a).balance_sen for a in accounts]


def test_a_run_posts_every_purchase_with_two_entries(
        funded: tuple[Database, list[int], int]) -> None:
    db, wallets, payable = funded
    spends = [(wallets[0], 30_000), (wallets[1], 5_000), (wallets[0], 70_000),
              (wallets[2], 1)]
    postings = _postings(db, spends, payable)
    _post_with_records(db, postings)
    assert _balances(db, wallets + [payable]) == [0, 95_000, 99_999, 105_001]
    with db.transaction() as s:
        rows = s.execute(select(Transfer.id, Transfer.idempotency_key, Transfer.kind,
                                Transfer.debit_account_id, Transfer.amount_sen, Transfer.memo)
                         .where(Transfer.kind == "purchase").order_by(Transfer.id)).all()
        assert [tuple(r) for r in rows] == [
            (p.transfer_id, p.idempotency_key, "purchase", p.debit_account_id, p.amount_sen,
             p.memo) for p in postings]
        entries = s.execute(select(JournalEntry.transfer_id, func.sum(JournalEntry.amount_sen),
                                   func.count()).group_by(JournalEntry.transfer_id)
                            .where(JournalEntry.transfer_id.in_([p.transfer_id
                                                                 for p in postings]))).all()
        assert sorted((t, int(total), n) for t, total, n in entries) == [
            (p.transfer_id, 0, 2) for p in postings]


def test_a_wallet_below_zero_refuses_the_whole_run(
        funded: tuple[Database, list[int], int]) -> None:
    db, wallets, payable = funded
    postings = _postings(db, [(wallets[0], 60_000), (wallets[1], 10), (wallets[0], 40_001)],
                         payable)
    with pytest.raises(InsufficientFunds), db.transaction() as s:
        post_postings(s.connection(), postings, utcnow())
    assert _balances(db, wallets + [payable]) == [FUNDED_SEN] * 3 + [0]


def test_a_repeated_key_is_a_lost_race(funded: tuple[Database, list[int], int]) -> None:
    db, wallets, payable = funded
    first = _postings(db, [(wallets[0], 100)], payable)
    _post_with_records(db, first)
    again = _postings(db, [(wallets[1], 100)], payable)
    again = [_with(p, idempotency_key=first[0].idempotency_key) for p in again]
    with pytest.raises(IntegrityError) as caught, db.transaction() as s:
        post_postings(s.connection(), again, utcnow())
    assert _lost_a_race(caught.value)
    assert _balances(db, wallets + [payable]) == [FUNDED_SEN - 100, FUNDED_SEN, FUNDED_SEN,
                                                  100]


def test_a_pipelined_run_writes_every_value_as_given(
        funded: tuple[Database, list[int], int]) -> None:
    """Bytes (every octet), a timestamp to the microsecond and awkward text go through
    the JSON rows and come back unchanged; the debit is confirmed after the block."""
    db, wallets, payable = funded
    memo = 'EDC00001 "quoted" back\\slash é \u20ac'
    postings = [_with(p, memo=memo)
                for p in _postings(db, [(wallets[0], 250)], payable)]
    at = datetime(2026, 12, 1, 5, 6, 7, 891_011, tzinfo=UTC)
    unit = bytes(range(256))
    with db.transaction() as s:
        connection = s.connection()
        (rid,) = reserve_ids(connection, "request_records", 1)
        with pipeline(connection):
            purchases = submit_postings(connection, postings, utcnow())
            INSERT_RECORDS.submit(connection, [
                {"id": rid, "tid": "EDC00001", "local_date": "1201", "key_date": "20261201",
                 "invoice": None, "original_record_id": None, "card_id": None, "basket": None,
             "stock_ewarong_id": None, "stan": "000001",
                 "kind": "request", "mti": "0210", "processing_code": "000000",
                 "amount_sen": 250, "request_hash": "f" * 64, "response_code": "00",
                 "response_unit": unit, "transfer_id": postings[0].transfer_id,
                 "created_at": at}])
        purchases.confirm()
    with db.transaction() as s:
        record = s.get_one(RequestRecord, rid)
        assert record.response_unit == unit
        assert record.created_at.replace(tzinfo=UTC) == at  # SQLite keeps it naive UTC
        assert s.get_one(Transfer, postings[0].transfer_id).memo == memo
    assert _balances(db, [wallets[0], payable]) == [FUNDED_SEN - 250, 250]


def test_a_pipelined_debit_below_zero_is_refused_at_confirm(
        funded: tuple[Database, list[int], int]) -> None:
    db, wallets, payable = funded
    postings = _postings(db, [(wallets[0], FUNDED_SEN + 1)], payable)
    with pytest.raises(InsufficientFunds), db.transaction() as s:
        connection = s.connection()
        with pipeline(connection):
            purchases = submit_postings(connection, postings, utcnow())
        purchases.confirm()
    assert _balances(db, [wallets[0], payable]) == [FUNDED_SEN, 0]


def test_a_repeated_key_in_a_pipeline_block_is_a_lost_race_at_its_end(
        funded: tuple[Database, list[int], int]) -> None:
    db, wallets, payable = funded
    first = _postings(db, [(wallets[0], 100)], payable)
    _post_with_records(db, first)
    again = [_with(p, idempotency_key=first[0].idempotency_key)
             for p in _postings(db, [(wallets[1], 100)], payable)]
    with pytest.raises(IntegrityError) as caught, db.transaction() as s:
        connection = s.connection()
        with pipeline(connection):
            submit_postings(connection, again, utcnow())
    assert _lost_a_race(caught.value)
    assert _balances(db, wallets + [payable]) == [FUNDED_SEN - 100, FUNDED_SEN, FUNDED_SEN,
                                                  100]


def test_a_result_is_read_only_after_its_pipeline_block(
        funded: tuple[Database, list[int], int]) -> None:
    """On PostgreSQL a result read inside its block would be empty (psycopg has not
    received it): refused loudly.  After the block it is there, on both engines."""
    db, _, _ = funded
    with db.transaction() as s:
        connection = s.connection()
        with pipeline(connection):
            one = submit_sql(connection, "SELECT 41 + 1", ())
            if db.is_postgres:
                with pytest.raises(AssertionError, match="after its block"):
                    one.rows()
        assert one.rows() == [(42,)]
