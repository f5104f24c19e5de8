"""The money invariant (FAILURES.md): run after every test that moves money and
after every load or chaos run.

1. every transfer has exactly two journal entries that sum to zero and match it,
   and money flows the way its kind says (allocation: program -> wallet;
   purchase: wallet -> e-warong payable);
2. every account's balance equals the sum of its journal entries;
3. wallets + e-warong payables == what allocations credited == -program balance;
4. no wallet or e-warong payable is below zero;
5. every approved purchase record (HOST_SPEC §4-5: 0210, DE 3 000000, RC 00)
   points to exactly one purchase debit of its amount, every purchase debit has
   its approved record (no orphan debit), the same for voids (DE 3 020000) and their
   pay-backs, no two records share a transfer, and a reversal record that restored
   money points to a reversal of its amount;
6. every reversal mirrors a purchase or a void, at most once, for the same amount;
   every void pays back its own purchase's amount to the purchase's wallet; and no
   purchase is paid back twice (two standing voids, or a void and a reversal);
7. stock is conserved: every shelf holds what it received less what its standing
   purchases took, and never below zero (:mod:`switch.ledger.stock_invariant`).

The schema enforces some of these (unique keys, CHECKs); they are checked here
anyway, because the checker must also judge a database whose schema drifted or
was written by hand.  It reads only; the one transaction gives a consistent view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from switch.db.engine import Database
from switch.db.tables import (
    Account,
    JournalEntry,
    RequestRecord,
    Settlement,
    SettlementDifference,
    Transfer,
)
from switch.ledger.stock_invariant import check_stock
from switch.money import rupiah

#: Violations shown by summary(); and fetched per kind of check, so a thoroughly
#: broken ledger still yields a report rather than exhausting memory.
MAX_LISTED = 20
MAX_FETCHED = 1000


@dataclass
class InvariantReport:
    """The verdict: ``ok`` when there are no violations; totals in sen."""

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

    @property
    def balanced(self) -> bool:
        """Invariant 3 alone: what was credited is what wallets and e-warong hold."""
        return self.total_credited_sen == self.wallets_sen + self.ewarong_sen

    def summary(self) -> str:
        head = (
            f"money invariant {'HOLDS' if self.ok else 'BROKEN'}: the program credited "
            f"{rupiah(self.total_credited_sen)} {'=' if self.balanced else '!='} "
            f"wallets {rupiah(self.wallets_sen)} + e-warong {rupiah(self.ewarong_sen)}; "
            f"{self.transfers} transfers, "
            f"{self.approved_purchases} approved purchases, {self.reversals} reversals"
        )
        if self.ok:
            return head
        shown = self.violations[:MAX_LISTED]
        more = len(self.violations) - len(shown)
        return "\n  - ".join([head, *shown]) + (f"\n  ... and {more} more" if more else "")


def check_invariants(db: Database) -> InvariantReport:
    """Check invariants 1-6 (module docstring) in one transaction; never raises on a
    broken ledger, it reports (``report.ok``, ``report.summary()``)."""
    report = InvariantReport()
    with db.transaction() as session:
        _check_journal(session, report)
        _check_flows(session, report)
        _check_balances(session, report)
        _check_totals(session, report)
        _check_purchases(session, report)
        _check_reversals(session, report)
        report.violations += check_stock(session)
    return report


def _check_journal(session: Session, report: InvariantReport) -> None:
    """Invariant 1, filtered in SQL so a load run's millions of rows stay in the database."""
    report.transfers = session.scalar(select(func.count()).select_from(Transfer)) or 0
    entries = (
        select(JournalEntry.transfer_id, func.count().label("n"),
               func.sum(JournalEntry.amount_sen).label("total"),
               func.max(JournalEntry.amount_sen).label("credit"),
               func.min(JournalEntry.amount_sen).label("debit"))
        .group_by(JournalEntry.transfer_id).subquery()
    )
    unbalanced = session.scalars(
        select(Transfer.id)
        .outerjoin(entries, entries.c.transfer_id == Transfer.id)
        .where(or_(entries.c.n.is_(None), entries.c.n != 2, entries.c.total != 0,
                   entries.c.credit != Transfer.amount_sen,
                   entries.c.debit != -Transfer.amount_sen))
        .limit(MAX_FETCHED)
    ).all()
    for tid in unbalanced:
        report.violations.append(f"transfer {tid}: journal entries do not balance")
    misplaced = session.execute(
        select(JournalEntry.transfer_id, JournalEntry.account_id)
        .join(Transfer, Transfer.id == JournalEntry.transfer_id)
        .where(or_(
            and_(JournalEntry.amount_sen < 0,
                 JournalEntry.account_id != Transfer.debit_account_id),
            and_(JournalEntry.amount_sen >= 0,
                 JournalEntry.account_id != Transfer.credit_account_id),
        ))
        .limit(MAX_FETCHED)
    ).all()
    for tid, account in misplaced:
        report.violations.append(f"transfer {tid}: entry on the wrong account {account}")


#: The (debit, credit) account kinds each transfer kind may move money between.
FLOWS: dict[str, tuple[tuple[str, str], ...]] = {
    "allocation": (("program", "kpm_wallet"),),
    "purchase": (("kpm_wallet", "ewarong_payable"),),
    "void": (("ewarong_payable", "kpm_wallet"),),
    # a purchase's reversal pays the wallet back; a void's reinstates the debit
    "reversal": (("ewarong_payable", "kpm_wallet"), ("kpm_wallet", "ewarong_payable")),
}


def _check_flows(session: Session, report: InvariantReport) -> None:
    debit, credit = aliased(Account), aliased(Account)
    debit_kind = func.coalesce(debit.kind, "?")
    credit_kind = func.coalesce(credit.kind, "?")
    allowed = or_(*(and_(Transfer.kind == kind, debit_kind == d, credit_kind == c)
                    for kind, pairs in FLOWS.items() for d, c in pairs))
    wrong = session.execute(
        select(Transfer.id, Transfer.kind, debit_kind, credit_kind)
        .outerjoin(debit, debit.id == Transfer.debit_account_id)
        .outerjoin(credit, credit.id == Transfer.credit_account_id)
        .where(~allowed)
        .limit(MAX_FETCHED)
    ).all()
    for tid, kind, dkind, ckind in wrong:
        report.violations.append(f"transfer {tid} ({kind}) moves money {dkind} -> {ckind}")
    mislabelled = session.execute(
        select(Transfer.id, Transfer.kind, Transfer.reverses_transfer_id)
        .where(or_(and_(Transfer.kind == "reversal", Transfer.reverses_transfer_id.is_(None)),
                   and_(Transfer.kind != "reversal", Transfer.reverses_transfer_id.is_not(None))))
        .limit(MAX_FETCHED)
    ).all()
    for tid, kind, reverses in mislabelled:
        report.violations.append(f"transfer {tid} ({kind}): reverses {reverses}")


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
    # int(): PostgreSQL's SUM(bigint) is NUMERIC, which arrives as a Decimal.
    report.total_credited_sen = int(session.scalar(
        select(func.coalesce(func.sum(Transfer.amount_sen), 0)).where(
            Transfer.kind == "allocation")
    ) or 0)
    held = report.wallets_sen + report.ewarong_sen
    if held != report.total_credited_sen:
        report.violations.append(
            f"wallets + e-warong hold {held} sen but the program credited "
            f"{report.total_credited_sen}")
    if held + report.program_sen != 0:
        report.violations.append(f"accounts sum to {held + report.program_sen}, not 0")


#: HOST_SPEC §4-5: the record of an approved purchase (0200 answered 0210, RC 00).
APPROVED_PURCHASE = (
    RequestRecord.kind == "request",
    RequestRecord.mti == "0210",
    RequestRecord.processing_code == "000000",
    RequestRecord.response_code == "00",
)
#: ... and of an approved void (0200/020000, RC 00), with the transfer kind of each.
APPROVED_VOID = (*APPROVED_PURCHASE[:2], RequestRecord.processing_code == "020000",
                 RequestRecord.response_code == "00")
_MONEY_RECORDS = (("purchase", APPROVED_PURCHASE, "debit"), ("void", APPROVED_VOID, "transfer"))


def _check_purchases(session: Session, report: InvariantReport) -> None:
    report.approved_purchases = session.scalar(
        select(func.count()).select_from(RequestRecord).where(*APPROVED_PURCHASE)) or 0
    for kind, approved, what in _MONEY_RECORDS:
        unmatched = session.scalars(
            select(RequestRecord.id)
            .outerjoin(Transfer, Transfer.id == RequestRecord.transfer_id)
            .where(*approved)
            .where(or_(Transfer.id.is_(None), Transfer.kind != kind,
                       Transfer.amount_sen != RequestRecord.amount_sen))
            .limit(MAX_FETCHED)
        ).all()
        for rec_id in unmatched:
            report.violations.append(
                f"approved {kind} record {rec_id} has no matching {kind} {what}")
        orphans = session.scalars(
            select(Transfer.id).where(
                Transfer.kind == kind,
                Transfer.id.not_in(select(RequestRecord.transfer_id).where(
                    RequestRecord.transfer_id.is_not(None), *approved)),
            ).limit(MAX_FETCHED)
        ).all()
        for transfer_id in orphans:
            report.violations.append(f"{kind} transfer {transfer_id} has no approved request")
    shared = session.scalars(
        select(RequestRecord.transfer_id).where(RequestRecord.transfer_id.is_not(None))
        .group_by(RequestRecord.transfer_id).having(func.count() > 1)
    ).all()
    for shared_id in shared:
        report.violations.append(f"transfer {shared_id} is claimed by several requests")
    restored = session.scalars(
        select(RequestRecord.id)
        .outerjoin(Transfer, Transfer.id == RequestRecord.transfer_id)
        .where(RequestRecord.kind == "reversal", RequestRecord.transfer_id.is_not(None))
        .where(or_(Transfer.id.is_(None), Transfer.kind != "reversal",
                   Transfer.amount_sen != RequestRecord.amount_sen))
        .limit(MAX_FETCHED)
    ).all()
    for rec_id in restored:
        report.violations.append(f"reversal request {rec_id} has no matching reversal")


def _check_reversals(session: Session, report: InvariantReport) -> None:
    original = aliased(Transfer)
    report.reversals = session.scalar(
        select(func.count()).select_from(Transfer).where(Transfer.kind == "reversal")) or 0
    unmirrored = session.scalars(
        select(Transfer.id)
        .outerjoin(original, original.id == Transfer.reverses_transfer_id)
        .where(Transfer.kind == "reversal")
        .where(or_(original.id.is_(None), original.kind.not_in(("purchase", "void")),
                   Transfer.amount_sen != original.amount_sen,
                   Transfer.debit_account_id != original.credit_account_id,
                   Transfer.credit_account_id != original.debit_account_id))
        .limit(MAX_FETCHED)
    ).all()
    for rid in unmirrored:
        report.violations.append(f"reversal {rid} does not mirror a purchase or a void")
    twice = session.scalars(
        select(Transfer.reverses_transfer_id).where(Transfer.reverses_transfer_id.is_not(None))
        .group_by(Transfer.reverses_transfer_id).having(func.count() > 1)
    ).all()
    for reversed_id in twice:
        report.violations.append(f"transfer {reversed_id} is reversed more than once")
    _check_voids(session, report)


def _check_voids(session: Session, report: InvariantReport) -> None:
    """A void pays back its own purchase (same amount, same two accounts); a purchase is
    paid back at most once: by one standing (unreversed) void, or by a reversal."""
    void_record, purchase_record = aliased(RequestRecord), aliased(RequestRecord)
    void, purchase = aliased(Transfer), aliased(Transfer)
    mismatched = session.scalars(
        select(void.id)
        .join(void_record, void_record.transfer_id == void.id)
        .outerjoin(purchase_record, purchase_record.id == void_record.original_record_id)
        .outerjoin(purchase, purchase.id == purchase_record.transfer_id)
        .where(void.kind == "void")
        .where(or_(purchase.id.is_(None), purchase.kind != "purchase",
                   void.amount_sen != purchase.amount_sen,
                   void.debit_account_id != purchase.credit_account_id,
                   void.credit_account_id != purchase.debit_account_id))
        .limit(MAX_FETCHED)).all()
    for void_id in mismatched:
        report.violations.append(f"void {void_id} does not pay back its own purchase")
    reversing = aliased(Transfer)
    paid_back = (
        select(purchase_record.transfer_id.label("purchase_id"))
        .select_from(void_record)
        .join(purchase_record, purchase_record.id == void_record.original_record_id)
        .join(void, void.id == void_record.transfer_id)
        .outerjoin(reversing, reversing.reverses_transfer_id == void.id)
        .where(void.kind == "void", reversing.id.is_(None))
        .union_all(select(Transfer.reverses_transfer_id.label("purchase_id"))
                   .where(Transfer.kind == "reversal", Transfer.reverses_transfer_id.in_(
                       select(purchase.id).where(purchase.kind == "purchase"))))
        .subquery())
    twice = session.scalars(
        select(paid_back.c.purchase_id).group_by(paid_back.c.purchase_id)
        .having(func.count() > 1).limit(MAX_FETCHED)).all()
    for purchase_id in twice:
        report.violations.append(f"purchase {purchase_id} is paid back more than once")


def unreversed_purchases(db: Database) -> tuple[int, int]:
    """(count, sen) of purchase debits no reversal undid: what terminals must have seen
    approved (the other half of the money invariant, checked by ``make run``/``load``)."""
    with db.transaction() as session:
        reversed_ids = select(Transfer.reverses_transfer_id).where(
            Transfer.reverses_transfer_id.is_not(None))
        count, total = session.execute(
            select(func.count(), func.coalesce(func.sum(Transfer.amount_sen), 0)).where(
                Transfer.kind == "purchase", Transfer.id.not_in(reversed_ids))
        ).one()
    return int(count), int(total)


def standing_voids(db: Database) -> tuple[int, int]:
    """(count, sen) of void pay-backs no reversal undid: the voids terminals must have
    seen approved."""
    with db.transaction() as session:
        reversed_ids = select(Transfer.reverses_transfer_id).where(
            Transfer.reverses_transfer_id.is_not(None))
        count, total = session.execute(
            select(func.count(), func.coalesce(func.sum(Transfer.amount_sen), 0)).where(
                Transfer.kind == "void", Transfer.id.not_in(reversed_ids))
        ).one()
    return int(count), int(total)


def check_settlements(db: Database) -> list[str]:
    """HOST_SPEC §4 for every closed batch: the switch's settled totals are the ledger's
    (its purchases and voids that no reversal undid, summed from their transfers), and
    the terminal's totals are the switch's, or (after a batch upload) differ from them
    by exactly the differences recorded.  Returns the violations (none: all hold)."""
    problems: list[str] = []
    with db.transaction() as session:
        # a reversal decided before the settlement (a smaller record id: ids are handed
        # out in decision order) undid its transfer; one decided after it did not
        # change what was settled
        reversing, reversal_record = aliased(Transfer), aliased(RequestRecord)
        reversed_before = (
            select(reversing.id)
            .join(reversal_record, reversal_record.transfer_id == reversing.id)
            .where(reversing.reverses_transfer_id == Transfer.id,
                   reversal_record.id < RequestRecord.settlement_id)
            .exists())
        rows = session.execute(
            select(RequestRecord.settlement_id, RequestRecord.processing_code,
                   func.count(), func.coalesce(func.sum(Transfer.amount_sen), 0))
            .join(Transfer, Transfer.id == RequestRecord.transfer_id)
            .where(RequestRecord.settlement_id.is_not(None), ~reversed_before)
            .group_by(RequestRecord.settlement_id, RequestRecord.processing_code)).all()
        ledger: dict[int, list[int]] = {}
        for settlement_id, code, count, total in rows:
            assert settlement_id is not None, "selected where not NULL"
            sums = ledger.setdefault(int(settlement_id), [0, 0, 0, 0])
            at = 0 if code == "000000" else 2
            sums[at], sums[at + 1] = int(count), int(total)
        differences: dict[int, list[int]] = {}
        for settlement_id, code, kind, switch_sen, terminal_sen in session.execute(
                select(SettlementDifference.settlement_id,
                       SettlementDifference.processing_code, SettlementDifference.kind,
                       SettlementDifference.switch_amount_sen,
                       SettlementDifference.terminal_amount_sen)):
            delta = differences.setdefault(int(settlement_id), [0, 0, 0, 0])
            at = 0 if code == "000000" else 2
            count_delta = {"switch_only": 1, "terminal_only": -1}.get(kind, 0)
            delta[at] += count_delta
            delta[at + 1] += int(switch_sen or 0) - int(terminal_sen or 0)
        for settled in session.scalars(select(Settlement).where(Settlement.closed)):
            switch = [settled.switch_purchase_count, settled.switch_purchase_sen,
                      settled.switch_void_count, settled.switch_void_sen]
            terminal = [settled.terminal_purchase_count, settled.terminal_purchase_sen,
                        settled.terminal_void_count, settled.terminal_void_sen]
            if switch != ledger.get(settled.id, [0, 0, 0, 0]):
                problems.append(f"settlement {settled.id} ({settled.tid} batch "
                                f"{settled.batch_number}): switch totals {switch} != ledger "
                                f"{ledger.get(settled.id, [0, 0, 0, 0])}")
            explained = [t + d for t, d in zip(terminal, differences.get(settled.id,
                                                                          [0, 0, 0, 0]),
                                               strict=True)]
            if explained != switch:
                problems.append(f"settlement {settled.id} ({settled.tid} batch "
                                f"{settled.batch_number}): terminal totals {terminal} and the "
                                f"recorded differences do not make the switch's {switch}")
    return problems
