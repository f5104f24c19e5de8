"""The database side of the verdict: the rows the checker compares the terminals'
history with, read once after the switches have stopped (one transaction).

Every purchase debit with the idempotency key of the request that made it (its
``request`` record), whether a reversal undid it; every wallet's balance; what the
e-warong payables hold and what the programme credited; and the ledger's own
invariant report (:func:`switch.ledger.invariants.check_invariants`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from switch.db.engine import Database
from switch.db.tables import Account, RequestRecord, Transfer
from switch.ledger.invariants import check_invariants

from .history import key_of


@dataclass(frozen=True)
class Debit:
    """A purchase transfer; ``key`` is None when no request record claims it."""

    transfer_id: int
    key: str | None
    amount_sen: int
    reversed: bool


@dataclass
class LedgerRows:
    debits: list[Debit] = field(default_factory=list)
    #: account id -> balance, every KPM wallet
    wallets_sen: dict[int, int] = field(default_factory=dict)
    ewarong_sen: int = 0
    credited_sen: int = 0
    #: :func:`check_invariants`'s violations (empty: the ledger's own invariant holds)
    invariant_violations: list[str] = field(default_factory=list)


def read_ledger_rows(db: Database) -> LedgerRows:
    rows = LedgerRows()
    with db.transaction(exclusive=False) as session:
        reversed_ids = set(session.scalars(
            select(Transfer.reverses_transfer_id).where(
                Transfer.reverses_transfer_id.is_not(None))))
        for transfer_id, amount, tid, local_date, stan in session.execute(
                select(Transfer.id, Transfer.amount_sen, RequestRecord.tid,
                       RequestRecord.local_date, RequestRecord.stan)
                .outerjoin(RequestRecord, (RequestRecord.transfer_id == Transfer.id)
                           & (RequestRecord.kind == "request"))
                .where(Transfer.kind == "purchase")):
            key = key_of(tid, local_date, stan) if tid is not None else None
            rows.debits.append(Debit(int(transfer_id), key, int(amount),
                                     transfer_id in reversed_ids))
        for account_id, kind, balance in session.execute(
                select(Account.id, Account.kind, Account.balance_sen)):
            if kind == "kpm_wallet":
                rows.wallets_sen[int(account_id)] = int(balance)
            elif kind == "ewarong_payable":
                rows.ewarong_sen += int(balance)
        rows.credited_sen = sum(int(amount) for amount in session.scalars(
            select(Transfer.amount_sen).where(Transfer.kind == "allocation")))
    rows.invariant_violations = list(check_invariants(db).violations)
    return rows
