"""The reconciliation report's checks (FAILURES F2; :mod:`switch.reports.reconciliation`
defines them): the red lines, a double posting and a payable that does not add up,
and the notes, a TID that is no registered terminal and an invoice used twice in a
batch.  Each reads through the day's :class:`~switch.reports.recon_queries.DayReader`
and adds :class:`~switch.reports.recon_model.Anomaly` rows to its report."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from switch.core.batch import PURCHASE_CODE, VOID_CODE
from switch.core.request import rrn_for
from switch.money import rupiah
from switch.reports.recon_model import Anomaly
from switch.reports.recon_queries import RECORDS, TERMINALS, TRANSFERS, DayReader, approved, as_int

__all__ = ["MAX_FETCHED", "check"]

#: Anomalies fetched per check: a thoroughly broken day still yields a report.
MAX_FETCHED = 1000
_PURCHASE_KEY = re.compile(r"^pur:(?P<tid>[^:]+):(?P<key_date>\d{8}):(?P<stan>\d{6})")


def check(day: DayReader) -> None:
    """Every check on the day :meth:`DayReader.read_day` read; the anomalies red first."""
    for one in (_double_postings, _double_records, _unposted, _shared, _unregistered,
                _reused_invoices, _payable_mismatches):
        one(day)
    day.report.anomalies.sort(key=lambda a: (not a.red, a.kind, a.mid or "", a.tid or ""))


def _flag(day: DayReader, kind: str, detail: str, *, red: bool = True,
          tid: str | None = None, mid: str | None = None, rrn: str | None = None,
          amount_sen: int | None = None) -> None:
    """An anomaly, of ``tid``'s e-warong unless ``mid`` is given."""
    if mid is None and tid is not None:
        mid = day.mid_of(tid)
    day.report.anomalies.append(Anomaly(kind, red, detail, mid, tid, rrn, amount_sen))


def _mid_of_accounts(day: DayReader, *accounts: int) -> str | None:
    for account in accounts:
        if account in day.by_payable:
            return day.by_payable[account].mid
    return None


def _double_postings(day: DayReader) -> None:
    """Money transfers of the day no approved record claims (see the module)."""
    t, r = TRANSFERS, RECORDS
    claim = r.alias("claim")
    claims = {
        "purchase": (claim.c.transfer_id == t.c.id, *approved(claim, PURCHASE_CODE)),
        "void": (claim.c.transfer_id == t.c.id, *approved(claim, VOID_CODE)),
        "reversal": (claim.c.transfer_id == t.c.id, claim.c.kind == "reversal"),
    }
    unclaimed = or_(*(and_(t.c.kind == kind, ~select(claim.c.id).where(*cond).exists())
                      for kind, cond in claims.items()))
    orphans = day.rows(
        select(t.c.id, t.c.kind, t.c.idempotency_key, t.c.amount_sen,
               t.c.debit_account_id, t.c.credit_account_id)
        .where(unclaimed, *day.during(t.c.created_at), *day.payable_scope(t))
        .order_by(t.c.id).limit(MAX_FETCHED))
    for row in orphans:
        amount = int(row.amount_sen)
        mid = _mid_of_accounts(day, int(row.credit_account_id), int(row.debit_account_id))
        key = _PURCHASE_KEY.match(row.idempotency_key) if row.kind == "purchase" else None
        if key is None:
            _flag(day, f"unrecorded_{row.kind}",
                  f"{row.kind} transfer {row.id} ({row.idempotency_key}, {rupiah(amount)}) "
                  f"moves an e-warong's money with no approved record", mid=mid,
                  amount_sen=amount)
        else:
            _second_credit(day, row, key, mid)


def _second_credit(day: DayReader, row: Any, key: re.Match[str], mid: str | None) -> None:
    """An unclaimed purchase transfer of the sale ``key``: a double posting if the sale
    was approved or credited already, else a credit without a sale."""
    t, r = TRANSFERS, RECORDS
    amount = int(row.amount_sen)
    tid, key_date, stan = key["tid"], key["key_date"], key["stan"]
    siblings = [int(i) for i in day.c.execute(
        select(t.c.id).where(t.c.kind == "purchase", t.c.id != row.id,
                             t.c.idempotency_key.startswith(
                                 f"pur:{tid}:{key_date}:{stan}", autoescape=True))
        .order_by(t.c.id)).scalars()]
    sale = day.c.execute(
        select(r.c.id, r.c.transfer_id).where(
            r.c.tid == tid, r.c.key_date == key_date, r.c.stan == stan,
            *approved(r, PURCHASE_CODE))).first()
    if sale is None and not siblings:
        _flag(day, "unrecorded_purchase",
              f"purchase transfer {row.id} ({row.idempotency_key}, {rupiah(amount)}) "
              f"credits the e-warong with no approved purchase record", mid=mid,
              tid=tid, amount_sen=amount)
        return
    rrn = rrn_for(int(sale.id)) if sale is not None else None
    others = sorted({*siblings, *([int(sale.transfer_id)] if sale is not None
                                  and sale.transfer_id is not None else [])})
    _flag(day, "double_posting",
          f"DOUBLE POSTING (F2): purchase transfer {row.id} ({row.idempotency_key}, "
          f"{rupiah(amount)}) credits the e-warong again for the sale TID {tid} "
          f"key date {key_date} STAN {stan}"
          + (f" (approved as RRN {rrn})" if rrn else "")
          + f", already posted as transfer {', '.join(map(str, others))}",
          mid=mid, tid=tid, rrn=rrn, amount_sen=amount)


def _double_records(day: DayReader) -> None:
    """Two approved purchase records of one key (the schema forbids them)."""
    dup = RECORDS.alias("dup")
    keys = day.rows(
        select(dup.c.tid, dup.c.key_date, dup.c.stan, func.count(),
               func.sum(dup.c.amount_sen))
        .where(*approved(dup, PURCHASE_CODE), *day.during(dup.c.created_at),
               *day.tid_scope(dup.c.tid))
        .group_by(dup.c.tid, dup.c.key_date, dup.c.stan).having(func.count() > 1)
        .limit(MAX_FETCHED))
    for tid, key_date, stan, count, total in keys:
        _flag(day, "double_posting",
              f"DOUBLE POSTING (F2): {count} approved purchase records for the one key "
              f"TID {tid} key date {key_date} STAN {stan} ({rupiah(as_int(total))})",
              tid=tid, amount_sen=as_int(total))


def _unposted(day: DayReader) -> None:
    """Approved purchases and voids of the day without their own transfer."""
    r, t = RECORDS, TRANSFERS
    expected = case((r.c.processing_code == VOID_CODE, "void"), else_="purchase")
    rows = day.rows(
        select(r.c.id, r.c.tid, r.c.processing_code, r.c.amount_sen,
               t.c.id.label("transfer"), t.c.kind, t.c.amount_sen.label("posted"))
        .select_from(r.outerjoin(t, t.c.id == r.c.transfer_id))
        .where(or_(and_(*approved(r, PURCHASE_CODE)), and_(*approved(r, VOID_CODE))),
               *day.during(r.c.created_at), *day.tid_scope(r.c.tid),
               or_(t.c.id.is_(None), t.c.kind != expected,
                   t.c.amount_sen != r.c.amount_sen))
        .order_by(r.c.id).limit(MAX_FETCHED))
    for row in rows:
        what = "purchase" if row.processing_code == PURCHASE_CODE else "void"
        posted = ("no transfer" if row.transfer is None else
                  f"transfer {row.transfer} is a {row.kind} of {rupiah(int(row.posted))}")
        rrn = rrn_for(int(row.id))
        _flag(day, f"unposted_{what}",
              f"approved {what} RRN {rrn} of {rupiah(int(row.amount_sen))}: {posted}",
              tid=row.tid, rrn=rrn, amount_sen=int(row.amount_sen))


def _shared(day: DayReader) -> None:
    """Two records claiming one transfer of the day."""
    r, t = RECORDS, TRANSFERS
    day_transfers = select(t.c.id).where(*day.during(t.c.created_at), *day.payable_scope(t))
    rows = day.rows(
        select(r.c.transfer_id, func.count(), func.min(r.c.tid))
        .where(r.c.transfer_id.in_(day_transfers))
        .group_by(r.c.transfer_id).having(func.count() > 1).limit(MAX_FETCHED))
    for transfer_id, count, tid in rows:
        _flag(day, "shared_transfer",
              f"DOUBLE POSTING (F2): transfer {transfer_id} is claimed by {count} records",
              tid=tid)


def _unregistered(day: DayReader) -> None:
    """Records of the day whose TID is no registered terminal (every e-warong only)."""
    if day.mid is not None:
        return
    r = RECORDS
    rows = day.rows(
        select(r.c.tid, func.count())
        .where(r.c.kind.in_(("request", "reversal")), *day.during(r.c.created_at),
               r.c.tid.not_in(select(TERMINALS.c.tid)))
        .group_by(r.c.tid).order_by(r.c.tid).limit(MAX_FETCHED))
    for tid, count in rows:
        _flag(day, "unregistered_terminal",
              f"{count} records of TID {tid}, which is no registered terminal: "
              f"in no e-warong's totals", red=False, tid=tid)


def _reused_invoices(day: DayReader) -> None:
    """Two approved purchases of one terminal's batch with one invoice (DE 62 is
    unique in a batch, HOST_SPEC §3): a sale sent twice under a new STAN, maybe."""
    r = RECORDS
    rows = day.rows(
        select(r.c.tid, r.c.invoice, func.count(), func.min(r.c.id))
        .where(*approved(r, PURCHASE_CODE), *day.during(r.c.created_at),
               *day.tid_scope(r.c.tid), r.c.invoice.is_not(None))
        .group_by(r.c.tid, r.c.invoice, r.c.settlement_id).having(func.count() > 1)
        .order_by(r.c.tid, r.c.invoice).limit(MAX_FETCHED))
    for tid, invoice, count, first in rows:
        rrn = rrn_for(int(first))
        _flag(day, "reused_invoice",
              f"{count} approved purchases of TID {tid} with invoice {invoice} in one "
              f"batch (first RRN {rrn}): the same sale twice?", red=False, tid=tid, rrn=rrn)


def _payable_mismatches(day: DayReader) -> None:
    """Each e-warong's payable movement against its terminals' net debits."""
    for ewarong in day.report.ewarongs:
        if not ewarong.payable_agrees:
            net, moved = ewarong.totals.net_sen, ewarong.payable_movement_sen
            _flag(day, "payable_mismatch",
                  f"PAYABLE MISMATCH: e-warong {ewarong.mid}'s payable account moved "
                  f"{rupiah(moved)} but its terminals' records net {rupiah(net)} "
                  f"(difference {rupiah(moved - net)})", mid=ewarong.mid,
                  amount_sen=moved - net)
