"""The money invariant (FAILURES.md): run after every test that moves money and
after every load or chaos run.

1. every transfer has exactly two journal entries that sum to zero and match it;
2. every account's balance equals the sum of its journal entries;
3. wallets + e-warong payables == what allocations credited == -program balance;
4. no wallet or e-warong payable is below zero;
5. every approved purchase record points to exactly one purchase debit of its
   amount, and every purchase debit has its approved record (no orphan debit);
6. every reversal mirrors a purchase, at most once, for the same amount.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from switch.ledger.database import Database
from switch.ledger.models import Account, JournalEntry, RequestRecord, Transfer
from switch.money import rupiah

MAX_LISTED = 20


@dataclass
class InvariantReport:
    violations: list[str] = field(default_factory=list)
    total_credited_sen: int = 0
    wallets_sen: int = 0
    ewarong_sen: int = 0
    program_sen: int = 0
    transfers: int = 0
    approved_purchases: int = 0
    reversals: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        head = (
            f"money invariant {'HOLDS' if self.ok else 'BROKEN'}: the program credited "
            f"{rupiah(self.total_credited_sen)} = wallets {rupiah(self.wallets_sen)} + e-warong "
            f"{rupiah(self.ewarong_sen)}; {self.transfers} transfers, "
            f"{self.approved_purchases} approved purchases, {self.reversals} reversals"
        )
        if self.ok:
            return head
        shown = self.violations[:MAX_LISTED]
        more = len(self.violations) - len(shown)
        return "\n  - ".join([head, *shown]) + (f"\n  ... and {more} more" if more else "")


def check_invariants(db: Database) -> InvariantReport:
    report = InvariantReport()
    with db.transaction() as session:
        _check_journal(session, report)
        _check_balances(session, report)
        _check_totals(session, report)
        _check_purchases(session, report)
        _check_reversals(session, report)
    return report


def _check_journal(session: Session, report: InvariantReport) -> None:
    report.transfers = session.scalar(select(func.count()).select_from(Transfer)) or 0
    entries = (
        select(JournalEntry.transfer_id, func.count().label("n"),
               func.sum(JournalEntry.amount_sen).label("total"),
               func.max(JournalEntry.amount_sen).label("credit"),
               func.min(JournalEntry.amount_sen).label("debit"))
        .group_by(JournalEntry.transfer_id).subquery()
    )
    rows = session.execute(
        select(Transfer.id, entries.c.n, entries.c.total, entries.c.credit, entries.c.debit,
               Transfer.amount_sen)
        .outerjoin(entries, entries.c.transfer_id == Transfer.id)
    ).all()
    for tid, n, total, credit, debit, amount in rows:
        if n != 2 or total != 0 or credit != amount or debit != -amount:
            report.violations.append(f"transfer {tid}: journal entries do not balance")
    sides = session.execute(
        select(JournalEntry.transfer_id, JournalEntry.account_id, JournalEntry.amount_sen,
               Transfer.debit_account_id, Transfer.credit_account_id)
        .join(Transfer, Transfer.id == JournalEntry.transfer_id)
    ).all()
    for tid, account, amount, debit_id, credit_id in sides:
        if account != (debit_id if amount < 0 else credit_id):
            report.violations.append(f"transfer {tid}: entry on the wrong account {account}")


def _check_balances(session: Session, report: InvariantReport) -> None:
    sums = (
        select(JournalEntry.account_id, func.sum(JournalEntry.amount_sen).label("total"))
        .group_by(JournalEntry.account_id).subquery()
    )
    rows = session.execute(
        select(Account.id, Account.kind, Account.balance_sen, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.account_id == Account.id)
    ).all()
    for account_id, kind, balance, total in rows:
        if balance != total:
            report.violations.append(
                f"account {account_id} ({kind}): balance {balance} != journal {total}")
        if kind != "program" and balance < 0:
            report.violations.append(f"account {account_id} ({kind}) is negative: {balance}")
        if kind == "kpm_wallet":
            report.wallets_sen += balance
        elif kind == "ewarong_payable":
            report.ewarong_sen += balance
        else:
            report.program_sen += balance


def _check_totals(session: Session, report: InvariantReport) -> None:
    report.total_credited_sen = session.scalar(
        select(func.coalesce(func.sum(Transfer.amount_sen), 0)).where(
            Transfer.kind == "allocation")
    ) or 0
    held = report.wallets_sen + report.ewarong_sen
    if held != report.total_credited_sen:
        report.violations.append(
            f"wallets + e-warong hold {held} sen but the program credited "
            f"{report.total_credited_sen}")
    if held + report.program_sen != 0:
        report.violations.append(f"accounts sum to {held + report.program_sen}, not 0")


def _check_purchases(session: Session, report: InvariantReport) -> None:
    approved = session.execute(
        select(RequestRecord.id, RequestRecord.amount_sen, Transfer.id, Transfer.kind,
               Transfer.amount_sen)
        .outerjoin(Transfer, Transfer.id == RequestRecord.transfer_id)
        .where(RequestRecord.kind == "request", RequestRecord.mti == "0210",
               RequestRecord.processing_code == "000000", RequestRecord.response_code == "00")
    ).all()
    report.approved_purchases = len(approved)
    for rec_id, rec_amount, transfer_id, kind, amount in approved:
        if transfer_id is None or kind != "purchase" or amount != rec_amount:
            report.violations.append(f"approved request {rec_id} has no matching purchase debit")
    orphans = session.scalars(
        select(Transfer.id).where(
            Transfer.kind == "purchase",
            Transfer.id.not_in(select(RequestRecord.transfer_id).where(
                RequestRecord.transfer_id.is_not(None), RequestRecord.response_code == "00")),
        )
    ).all()
    for transfer_id in orphans:
        report.violations.append(f"purchase transfer {transfer_id} has no approved request")


def _check_reversals(session: Session, report: InvariantReport) -> None:
    original = aliased(Transfer)
    rows = session.execute(
        select(Transfer.id, Transfer.amount_sen, Transfer.debit_account_id,
               Transfer.credit_account_id, original.kind, original.amount_sen,
               original.debit_account_id, original.credit_account_id)
        .outerjoin(original, original.id == Transfer.reverses_transfer_id)
        .where(Transfer.kind == "reversal")
    ).all()
    report.reversals = len(rows)
    for rid, amount, debit, credit, okind, oamount, odebit, ocredit in rows:
        if okind != "purchase" or amount != oamount or (debit, credit) != (ocredit, odebit):
            report.violations.append(f"reversal {rid} does not mirror a purchase")
