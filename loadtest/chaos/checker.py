"""The Jepsen-style verdict: the terminals' own history against the database rows.

Pure: ``check(exchanges, rows)`` reads nothing else.  For every purchase key the
history says what its terminal finally believes (:class:`TerminalView`): approved
(a signed 00), declined (any other definite answer), never sent, or indeterminate (no
answer, a broken link, an unusable or unsigned-91 answer) and then reversed (a
reversal answered 00) or still pending.  The rules (:data:`RULES`):

* ``ledger-invariant``: :func:`switch.ledger.invariants.check_invariants` holds;
* ``money-conserved``: wallets + e-warong payables = what the programme credited;
* ``no-negative-wallet``;
* ``approval-is-one-debit``: every approval a terminal saw and did not reverse is
  exactly one standing (unreversed) purchase debit of the amount it asked for;
* ``debit-seen-or-reversed``: every standing debit is an approval its terminal saw
  (and did not reverse); any other is "gagal tapi saldo terpotong" (FAILURES F13):
  the wallet paid for what the terminal showed as failed;
* ``no-reversal-pending``: at the end no terminal still owes a reversal.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .history import NOT_SENT, PURCHASE, REVERSAL, Exchange
from .ledger_rows import LedgerRows

RULES: dict[str, str] = {
    "ledger-invariant": "switch.ledger's check_invariants holds",
    "money-conserved": "wallets + e-warong payables = what the programme credited",
    "no-negative-wallet": "no wallet below zero",
    "approval-is-one-debit": "every approval a terminal saw and did not reverse is exactly "
                             "one standing debit of its amount",
    "debit-seen-or-reversed": "every standing debit was seen approved by its terminal "
                              "(else: gagal tapi saldo terpotong)",
    "no-reversal-pending": "no reversal left pending at the end",
}


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str
    key: str | None = None

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail}"


@dataclass
class TerminalView:
    """What one purchase's terminal saw of it, over every exchange with its key."""

    key: str
    amount_sen: int
    approved: bool = False
    #: RCs of definite answers other than 00 (signed, or unsigned but not 91)
    declined: list[str] = field(default_factory=list)
    indeterminate: bool = False
    sent: bool = False
    reversed: bool = False
    rrn: str | None = None

    @property
    def standing_approval(self) -> bool:
        return self.approved and not self.reversed

    @property
    def reversal_pending(self) -> bool:
        return self.indeterminate and not self.approved and not self.reversed


@dataclass
class Verdict:
    violations: list[Violation]
    views: int
    standing_approvals: int
    standing_debits: int

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def word(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def by_rule(self) -> Counter[str]:
        return Counter(v.rule for v in self.violations)


def terminal_views(exchanges: Iterable[Exchange]) -> dict[str, TerminalView]:
    views: dict[str, TerminalView] = {}
    for ex in sorted(exchanges, key=lambda e: e.sent_s):
        if ex.op not in (PURCHASE, REVERSAL):
            continue
        view = views.setdefault(ex.key, TerminalView(ex.key, ex.amount_sen))
        if ex.op == REVERSAL:
            view.reversed = view.reversed or ex.approved
            continue
        view.sent = view.sent or ex.outcome != NOT_SENT
        if ex.approved:
            view.approved, view.rrn = True, ex.rrn
        elif ex.indeterminate:
            view.indeterminate = True
        elif ex.rc is not None:
            view.declined.append(ex.rc)
    return views


def check(exchanges: Iterable[Exchange], rows: LedgerRows) -> Verdict:
    views = terminal_views(exchanges)
    standing: dict[str | None, list[int]] = defaultdict(list)
    for debit in rows.debits:
        if not debit.reversed:
            standing[debit.key].append(debit.amount_sen)
    violations = [Violation("ledger-invariant", v) for v in rows.invariant_violations]
    violations += _money(rows)
    violations += _approvals(views, standing)
    violations += _debits(views, standing)
    violations += [Violation("no-reversal-pending",
                             f"{v.key}: no answer ({v.amount_sen} sen) and its reversal was "
                             "never answered 00", v.key)
                   for v in views.values() if v.reversal_pending]
    return Verdict(violations, len(views), sum(v.standing_approval for v in views.values()),
                   sum(len(amounts) for amounts in standing.values()))


def _money(rows: LedgerRows) -> list[Violation]:
    found = []
    held = sum(rows.wallets_sen.values()) + rows.ewarong_sen
    if held != rows.credited_sen:
        found.append(Violation("money-conserved", f"wallets + e-warong hold {held} sen, the "
                               f"programme credited {rows.credited_sen}"))
    found += [Violation("no-negative-wallet", f"wallet account {account}: {balance} sen")
              for account, balance in sorted(rows.wallets_sen.items()) if balance < 0]
    return found


def _approvals(views: dict[str, TerminalView],
               standing: dict[str | None, list[int]]) -> list[Violation]:
    found = []
    for view in views.values():
        if not view.standing_approval:
            continue
        debits = standing.get(view.key, [])
        if not debits:
            found.append(Violation("approval-is-one-debit",
                                   f"{view.key}: the terminal saw 00 (RRN {view.rrn}) but the "
                                   "ledger holds no standing debit for it", view.key))
        elif len(debits) > 1:
            found.append(Violation("approval-is-one-debit",
                                   f"{view.key}: one approval, {len(debits)} debits", view.key))
        elif debits[0] != view.amount_sen:
            found.append(Violation("approval-is-one-debit",
                                   f"{view.key}: debit of {debits[0]} sen, the terminal asked "
                                   f"for {view.amount_sen}", view.key))
    return found


def _debits(views: dict[str, TerminalView],
            standing: dict[str | None, list[int]]) -> list[Violation]:
    found = []
    for key, amounts in standing.items():
        view = views.get(key) if key is not None else None
        if view is not None and view.standing_approval:
            continue  # its count and amount are the other rule's
        found += [Violation("debit-seen-or-reversed", f"{_why(key, view)} ({amount} sen)", key)
                  for amount in amounts]
    return found


def _why(key: str | None, view: TerminalView | None) -> str:
    if key is None:
        return "a purchase debit no request record claims"
    if view is None or not view.sent:
        return f"{key}: debited for a request no terminal sent"
    if view.reversed:
        return f"{key}: gagal tapi saldo terpotong: its reversal was answered 00 but the " \
               "debit stands"
    if view.declined and not view.indeterminate:
        return f"{key}: gagal tapi saldo terpotong: the terminal was told RC " \
               f"{'/'.join(view.declined)} but the wallet was debited"
    return f"{key}: gagal tapi saldo terpotong: no answer, and no reversal delivered"
