"""The only code that changes balances (DESIGN.md: one writer of money).

Every change is a :class:`Transfer` with an idempotency key and two journal
entries, written in the caller's transaction together with the balance updates
(and, in the host, with the HOST_SPEC §4 idempotency record and stored response).

Balances move with SQL-side arithmetic (``balance_sen = balance_sen + :x``), and
the funds check is part of the debit's own ``UPDATE ... WHERE balance_sen >= :x``,
so two concurrent writers on PostgreSQL (READ COMMITTED) can neither lose an
update nor both spend the same sen.  On SQLite every transaction already holds
the write lock from ``BEGIN IMMEDIATE`` (see :mod:`switch.db.engine`).

A refused posting (:class:`InsufficientFunds`, :class:`IdempotencyConflict`)
writes nothing, so the caller may go on and record a decline in the same
transaction.  Any other exception leaves the transaction half-written: the caller
must roll it back (``Database.transaction()`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from switch.clock import Clock, SystemClock
from switch.db.bulk import Bulk, Written, unnest
from switch.db.engine import Database
from switch.db.sql import Prepared
from switch.db.tables import (
    Account,
    JournalEntry,
    Kpm,
    Period,
    Transfer,
)
from switch.ledger.accounts import get_or_create_account
from switch.ledger.money import Posting, check_posting, net_deltas, require, require_amount

PROGRAM_OWNER = "BPNT"
#: Accounts that may never go below zero (the program account funds them).
NON_NEGATIVE_KINDS = frozenset({"kpm_wallet", "ewarong_payable"})
#: KPM credited per statement batch (and per transaction when given a Database):
#: well under SQLite's bound-parameter limit, short enough that the write lock is
#: never held long enough to time out a purchase (busy_timeout).
ALLOCATION_CHUNK = 500


class LedgerError(Exception):
    """A posting the ledger refuses; nothing was written."""


class InsufficientFunds(LedgerError):
    """The debit would take a KPM wallet or e-warong payable below zero (RC 51)."""


class IdempotencyConflict(LedgerError):
    """The key exists with different content: nothing is posted (HOST_SPEC §4, RC 94)."""


# -- accounts -----------------------------------------------------------------------


def program_account(session: Session) -> Account:
    """The BPNT program account: the funding source, negative by all it has credited."""
    return get_or_create_account(session, "program", PROGRAM_OWNER)


# -- transfers ----------------------------------------------------------------------

_DEBIT_PARAMS = {"account_id": "id", "debit_sen": "balance_sen"}
_CREDIT_PARAMS = {"account_id": "id", "credit_sen": "balance_sen"}
_DEBIT_NON_NEGATIVE = Bulk(
    Prepared(update(Account)
             .where(Account.id == bindparam("account_id"),
                    Account.balance_sen >= bindparam("debit_sen"))
             .values(balance_sen=Account.balance_sen - bindparam("debit_sen"))),
    "UPDATE accounts SET balance_sen = accounts.balance_sen - v.debit_sen FROM "
    + unnest(Account.__table__, _DEBIT_PARAMS)
    + " WHERE accounts.id = v.account_id AND accounts.balance_sen >= v.debit_sen",
    Account.__table__, _DEBIT_PARAMS, arrays=True)
_CREDIT = Bulk(
    Prepared(update(Account).where(Account.id == bindparam("account_id"))
             .values(balance_sen=Account.balance_sen + bindparam("credit_sen"))),
    "UPDATE accounts SET balance_sen = accounts.balance_sen + v.credit_sen FROM "
    + unnest(Account.__table__, _CREDIT_PARAMS)
    + " WHERE accounts.id = v.account_id",
    Account.__table__, _CREDIT_PARAMS, arrays=True)
_TRANSFER_COLUMNS = ("id", "idempotency_key", "kind", "debit_account_id", "credit_account_id",
                     "amount_sen", "reverses_transfer_id", "memo", "created_at")
MEMO_CHARS = 120
_INSERT_TRANSFER_WITH_ID = Bulk.insert(
    Transfer.__table__, _TRANSFER_COLUMNS,
    Prepared(insert(Transfer), column_keys=_TRANSFER_COLUMNS))
_ENTRY_COLUMNS = ("transfer_id", "account_id", "amount_sen")
_INSERT_ENTRIES = Bulk.insert(JournalEntry.__table__, _ENTRY_COLUMNS,
                              Prepared(insert(JournalEntry), column_keys=_ENTRY_COLUMNS))


def post_postings(connection: Connection, postings: Sequence[Posting], at: datetime) -> None:
    """:func:`submit_postings`, confirmed at once (outside a pipeline block)."""
    submit_postings(connection, postings, at).confirm()


class SubmittedPostings:
    """The statements of :func:`submit_postings`; :meth:`confirm` after their pipeline
    block has ended, before the commit."""

    def __init__(self, debit: Written | None, expected_debits: int) -> None:
        self._debit = debit
        self._expected = expected_debits

    def confirm(self) -> None:
        """Raise :class:`InsufficientFunds` if an account's conditional debit did not
        apply (the transaction must then roll back: the caller lets the exception
        through)."""
        if self._debit is not None and self._debit.rowcount != self._expected:
            raise InsufficientFunds("an account in the batch holds less than its debits")


def submit_postings(connection: Connection, postings: Sequence[Posting],
                    at: datetime) -> SubmittedPostings:
    """Write a batch's postings (purchases, reversals) in a few statements.

    Every posting is its own transfer with two journal entries, as with
    :func:`post_transfer`; the balance changes are summed per account
    (:func:`~switch.ledger.money.net_deltas`, which asserts they sum to zero) and
    applied with one conditional UPDATE of the accounts that lose money
    (``balance_sen >= debit``: refused, and the batch fails whole, if any would go
    below zero) and one UPDATE of those that gain.  All of it in the caller's
    transaction (the host's batch), under its writer lock.

    Idempotency: the host looked up each request's HOST_SPEC §4 record first, and
    the unique ``transfers.idempotency_key`` (and ``reverses_transfer_id``) refuse a
    second posting of a key (IntegrityError: the host treats it as a lost race,
    rolls back and decides again), so no key moves money twice.  Unknown accounts
    fail the foreign keys.

    The statements are submitted (they may share a pipeline block with the batch's
    other writes); the caller must :meth:`~SubmittedPostings.confirm` the debits
    after the block and before the commit.
    """
    if not postings:
        return SubmittedPostings(None, 0)
    deltas = net_deltas(postings)
    debits = [{"account_id": account, "debit_sen": -delta}
              for account, delta in sorted(deltas.items()) if delta < 0]
    credits = [{"account_id": account, "credit_sen": delta}
               for account, delta in sorted(deltas.items()) if delta > 0]
    debit = _DEBIT_NON_NEGATIVE.submit(connection, debits)
    _CREDIT.submit(connection, credits)
    created_at = at.astimezone(UTC)
    _INSERT_TRANSFER_WITH_ID.submit(connection, [
        {"id": p.transfer_id, "idempotency_key": p.idempotency_key, "kind": p.kind,
         "debit_account_id": p.debit_account_id, "credit_account_id": p.credit_account_id,
         "amount_sen": p.amount_sen, "reverses_transfer_id": p.reverses_transfer_id,
         "memo": p.memo[:MEMO_CHARS], "created_at": created_at}
        for p in postings])
    entries: list[dict[str, int]] = []
    for p in postings:
        entries.append({"transfer_id": p.transfer_id, "account_id": p.debit_account_id,
                        "amount_sen": -p.amount_sen})
        entries.append({"transfer_id": p.transfer_id, "account_id": p.credit_account_id,
                        "amount_sen": p.amount_sen})
    _INSERT_ENTRIES.submit(connection, entries)
    return SubmittedPostings(debit, len(debits))


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
    clock: Clock | None = None,
) -> Transfer:
    """Move ``amount_sen`` from the debit to the credit account, exactly once per key.

    The same key with the same content returns the first transfer and moves no
    money; the same key with other content raises :class:`IdempotencyConflict`
    (HOST_SPEC §4).  ``memo`` is informational and not part of the content.
    """
    check_posting(kind, debit_account_id, credit_account_id, amount_sen, idempotency_key,
                  reverses_transfer_id)
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
    found = set(session.scalars(
        select(Account.id).where(Account.id.in_((debit_account_id, credit_account_id)))
    ))
    if found != {debit_account_id, credit_account_id}:
        raise LedgerError("transfer between unknown accounts")
    # Debit first: a refusal here has written nothing.
    if not _debit(session, debit_account_id, amount_sen):
        raise InsufficientFunds(f"account {debit_account_id} holds less than {amount_sen} sen")
    _add(session, [credit_account_id], amount_sen)
    transfer = Transfer(
        idempotency_key=idempotency_key, kind=kind, debit_account_id=debit_account_id,
        credit_account_id=credit_account_id, amount_sen=amount_sen,
        reverses_transfer_id=reverses_transfer_id, memo=memo,
        created_at=_now_utc(clock),
    )
    session.add(transfer)
    session.flush()
    session.add_all([
        JournalEntry(transfer_id=transfer.id, account_id=debit_account_id, amount_sen=-amount_sen),
        JournalEntry(transfer_id=transfer.id, account_id=credit_account_id, amount_sen=amount_sen),
    ])
    session.flush()
    _refresh_loaded(session, (debit_account_id, credit_account_id))
    return transfer


def _debit(session: Session, account_id: int, amount_sen: int) -> bool:
    """Take ``amount_sen`` unless that would overdraw a non-negative account.

    One statement: the check and the write cannot be split by another writer.
    """
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            (Account.kind == "program") | (Account.balance_sen >= amount_sen),
        )
        .values(balance_sen=Account.balance_sen - amount_sen)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def _add(session: Session, account_ids: list[int], delta_sen: int) -> None:
    """Add ``delta_sen`` to each account (SQL-side; ids must be distinct)."""
    session.execute(
        update(Account)
        .where(Account.id.in_(account_ids))
        .values(balance_sen=Account.balance_sen + delta_sen)
        .execution_options(synchronize_session=False)
    )


def _refresh_loaded(session: Session, account_ids: Iterable[int]) -> None:
    """Keep Account objects already in the session in step with their rows."""
    for account_id in account_ids:
        loaded = session.identity_map.get(session.identity_key(Account, account_id))
        if loaded is not None:
            session.refresh(loaded, ["balance_sen"])


def reverse_transfer(session: Session, original: Transfer, *, idempotency_key: str,
                     clock: Clock | None = None) -> Transfer:
    """Post the mirror of purchase ``original``; a later call returns the first reversal.

    HOST_SPEC §4: a reversal restores money at most once however often it is
    repeated (the schema backs this with a unique ``reverses_transfer_id``).
    """
    if original.kind != "purchase":
        raise LedgerError(f"only a purchase can be reversed, not {original.kind!r}")
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
        memo=f"reverses {original.idempotency_key}"[:MEMO_CHARS], clock=clock,
    )


# -- allocation ---------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationResult:
    period_code: str
    credited_count: int
    already_count: int
    total_credited_sen: int


def allocation_key(period_code: str, kpm_id: int) -> str:
    return f"alloc:{period_code}:{kpm_id}"


def allocate_period(
    target: Database | Session, period_code: str, amount_sen: int, *,
    clock: Clock | None = None, progress: Callable[[int, int], None] | None = None,
) -> AllocationResult:
    """Credit every active KPM ``amount_sen`` once for ``period_code``, from the program.

    Running it again credits nobody twice (transfer key ``alloc:{period}:{kpm}``)
    and picks up KPM activated since; unspent balance carries over, since a credit
    simply adds to the wallet.  The same period with another amount raises
    :class:`IdempotencyConflict`.

    Given a :class:`Session`, everything happens in the caller's transaction.
    Given a :class:`Database`, each chunk of :data:`ALLOCATION_CHUNK` KPM commits on
    its own, so ~100k KPM never hold the write lock for long; an interrupted run is
    finished by running it again.  ``progress(done, total)``: KPM seen so far, after
    each chunk (with a :class:`Database`; the active KPM counted first).
    """
    require_amount(amount_sen)
    require(0 < len(period_code) <= 7, "period codes look like 2026-11")
    credited = already = 0
    after_kpm_id = 0
    if isinstance(target, Session):
        _ensure_period(target, period_code, amount_sen)
        while (step := _allocate_chunk(target, period_code, amount_sen, after_kpm_id,
                                       clock)) is not None:
            credited, already, after_kpm_id = credited + step[0], already + step[1], step[2]
    else:
        with target.transaction() as session:
            _ensure_period(session, period_code, amount_sen)
            total = int(session.scalar(select(func.count()).select_from(Kpm).where(
                Kpm.status == "active")) or 0) if progress is not None else 0
        if progress is not None:
            progress(0, total)
        while True:
            with target.transaction() as session:
                step = _allocate_chunk(session, period_code, amount_sen, after_kpm_id, clock)
            if step is None:
                break
            credited, already, after_kpm_id = credited + step[0], already + step[1], step[2]
            if progress is not None:
                progress(credited + already, max(total, credited + already))
    return AllocationResult(period_code, credited, already, credited * amount_sen)


def _ensure_period(session: Session, period_code: str, amount_sen: int) -> None:
    period = session.get(Period, period_code)
    if period is None:
        session.add(Period(code=period_code, amount_sen=amount_sen))
        session.flush()
    elif period.amount_sen != amount_sen:
        raise IdempotencyConflict(
            f"period {period_code} was allocated {period.amount_sen} sen, not {amount_sen}")


def _allocate_chunk(
    session: Session, period_code: str, amount_sen: int, after_kpm_id: int,
    clock: Clock | None,
) -> tuple[int, int, int] | None:
    """Credit the next chunk of active KPM after ``after_kpm_id``.

    Returns (credited, already credited, last KPM id), or ``None`` when done.  Set
    based: one SELECT of the chunk's keys, one multi-row INSERT of transfers and of
    journal entries, one UPDATE of the wallets and one of the program account.
    """
    rows = session.execute(
        select(Kpm.id, Kpm.wallet_account_id)
        .where(Kpm.status == "active", Kpm.id > after_kpm_id)
        .order_by(Kpm.id)
        .limit(ALLOCATION_CHUNK)
    ).all()
    if not rows:
        return None
    wallet_of = {allocation_key(period_code, kpm_id): wallet for kpm_id, wallet in rows}
    done = set(session.scalars(
        select(Transfer.idempotency_key).where(Transfer.idempotency_key.in_(list(wallet_of)))
    ))
    todo = [(key, wallet) for key, wallet in wallet_of.items() if key not in done]
    if todo:
        _credit_wallets(session, period_code, amount_sen, todo, _now_utc(clock))
    return len(todo), len(done), rows[-1][0]


def _credit_wallets(
    session: Session, period_code: str, amount_sen: int, todo: list[tuple[str, int]],
    now: datetime,
) -> None:
    program_id = program_account(session).id
    session.execute(insert(Transfer), [
        {"idempotency_key": key, "kind": "allocation", "debit_account_id": program_id,
         "credit_account_id": wallet, "amount_sen": amount_sen, "memo": f"BPNT {period_code}",
         "created_at": now}
        for key, wallet in todo
    ])
    ids = dict(session.execute(
        select(Transfer.idempotency_key, Transfer.id)
        .where(Transfer.idempotency_key.in_([key for key, _ in todo]))
    ).all())
    entries: list[dict[str, int]] = []
    for key, wallet in todo:
        entries.append({"transfer_id": ids[key], "account_id": program_id,
                        "amount_sen": -amount_sen})
        entries.append({"transfer_id": ids[key], "account_id": wallet, "amount_sen": amount_sen})
    session.execute(insert(JournalEntry), entries)
    wallets = [wallet for _, wallet in todo]
    require(len(set(wallets)) == len(wallets), "each KPM has its own wallet")
    _add(session, wallets, amount_sen)
    require(_debit(session, program_id, amount_sen * len(todo)), "the program may go negative")
    _refresh_loaded(session, [program_id, *wallets])


def _now_utc(clock: Clock | None) -> datetime:
    """The time of a posting, from the caller's clock (the system's by default)."""
    return (clock or SystemClock()).now().astimezone(UTC)
