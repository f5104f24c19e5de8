"""The only code that changes balances (DESIGN.md: one writer of money).

Every change is a :class:`Transfer` with an idempotency key and two journal
entries, written in the caller's transaction together with the balance updates.
Balances move with SQL-side arithmetic (``balance_sen = balance_sen + :x``), so
concurrent writers on PostgreSQL cannot lose an update.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from switch.ledger.database import Database
from switch.ledger.models import Account, JournalEntry, Kpm, Period, Transfer

PROGRAM_OWNER = "BPNT"
#: Accounts that may never go below zero (the program account funds them).
NON_NEGATIVE_KINDS = frozenset({"kpm_wallet", "ewarong_payable"})


class LedgerError(Exception):
    pass


class InsufficientFunds(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """The key exists with different content: nothing is posted."""


def get_or_create_account(session: Session, kind: str, owner_ref: str) -> Account:
    account = session.scalars(
        select(Account).where(Account.kind == kind, Account.owner_ref == owner_ref)
    ).first()
    if account is None:
        account = Account(kind=kind, owner_ref=owner_ref, balance_sen=0)
        session.add(account)
        session.flush()
    return account


def program_account(session: Session) -> Account:
    return get_or_create_account(session, "program", PROGRAM_OWNER)


def post_transfer(
    session: Session,
    *,
    idempotency_key: str,
    kind: str,
    debit_account_id: int,
    credit_account_id: int,
    amount_sen: int,
    reverses_transfer_id: int | None = None,
    memo: str | None = None,
) -> Transfer:
    """Move ``amount_sen`` from the debit to the credit account, exactly once per key."""
    assert type(amount_sen) is int and amount_sen > 0, "amounts are positive integer sen"
    existing = session.scalars(
        select(Transfer).where(Transfer.idempotency_key == idempotency_key)
    ).first()
    if existing is not None:
        same = (existing.kind, existing.debit_account_id, existing.credit_account_id,
                existing.amount_sen, existing.reverses_transfer_id) == (
            kind, debit_account_id, credit_account_id, amount_sen, reverses_transfer_id)
        if not same:
            raise IdempotencyConflict(f"transfer {idempotency_key} exists with other content")
        return existing
    debit = session.get(Account, debit_account_id, populate_existing=True)
    if debit is None or session.get(Account, credit_account_id) is None:
        raise LedgerError("transfer between unknown accounts")
    if debit.kind in NON_NEGATIVE_KINDS and debit.balance_sen < amount_sen:
        raise InsufficientFunds(f"account {debit.id} holds less than {amount_sen} sen")
    transfer = Transfer(
        idempotency_key=idempotency_key, kind=kind, debit_account_id=debit_account_id,
        credit_account_id=credit_account_id, amount_sen=amount_sen,
        reverses_transfer_id=reverses_transfer_id, memo=memo,
    )
    session.add(transfer)
    session.flush()
    session.add_all([
        JournalEntry(transfer_id=transfer.id, account_id=debit_account_id, amount_sen=-amount_sen),
        JournalEntry(transfer_id=transfer.id, account_id=credit_account_id, amount_sen=amount_sen),
    ])
    _move(session, debit_account_id, -amount_sen)
    _move(session, credit_account_id, amount_sen)
    return transfer


def _move(session: Session, account_id: int, delta_sen: int) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(balance_sen=Account.balance_sen + delta_sen)
        .execution_options(synchronize_session=False)
    )
    # Keep any loaded Account object in step with the row.
    loaded = session.identity_map.get(session.identity_key(Account, account_id))
    if loaded is not None:
        session.refresh(loaded, ["balance_sen"])


def reverse_transfer(session: Session, original: Transfer, *, idempotency_key: str) -> Transfer:
    """Post the mirror of ``original``; a second call returns the first reversal."""
    existing = session.scalars(
        select(Transfer).where(Transfer.reverses_transfer_id == original.id)
    ).first()
    if existing is not None:
        return existing
    return post_transfer(
        session, idempotency_key=idempotency_key, kind="reversal",
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount_sen=original.amount_sen, reverses_transfer_id=original.id,
        memo=f"reverses {original.idempotency_key}"[:120],
    )


@dataclass(frozen=True)
class AllocationResult:
    period_code: str
    credited_count: int
    already_count: int
    total_credited_sen: int


def allocate_period(db: Database, period_code: str, amount_sen: int) -> AllocationResult:
    """Credit every active KPM ``amount_sen`` once for ``period_code``.

    Running it again credits nobody twice (transfer key ``alloc:{period}:{kpm}``);
    unspent balance carries over, since a credit simply adds to the wallet.
    """
    assert type(amount_sen) is int and amount_sen > 0, "amounts are positive integer sen"
    with db.transaction() as session:
        if session.get(Period, period_code) is None:
            session.add(Period(code=period_code, amount_sen=amount_sen))
        program = program_account(session)
        prefix = f"alloc:{period_code}:"
        done = set(session.scalars(
            select(Transfer.idempotency_key).where(Transfer.idempotency_key.startswith(prefix))
        ))
        credited = already = 0
        rows = session.execute(select(Kpm.id, Kpm.wallet_account_id).where(
            Kpm.status == "active").order_by(Kpm.id)).all()
        for kpm_id, wallet_id in rows:
            key = f"{prefix}{kpm_id}"
            if key in done:
                already += 1
                continue
            post_transfer(session, idempotency_key=key, kind="allocation",
                          debit_account_id=program.id, credit_account_id=wallet_id,
                          amount_sen=amount_sen, memo=f"BPNT {period_code}")
            credited += 1
    return AllocationResult(period_code, credited, already, credited * amount_sen)
