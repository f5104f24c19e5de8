"""``make run``'s day end: every EDC of the fleet settles (HOST_SPEC §4).

The first terminal voids one of its approved purchases first (the family changed its
mind at the counter); the second has lost the record of one approved purchase, so
its totals differ: 95, batch upload, 0500/960000.  The others settle plainly.  Each
EDC prints its end-of-day slip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from switch.admin.demo import DemoTerminal
from terminal_sim.batch import Kind
from terminal_sim.edc import SettlementResult, TxnResult
from terminal_sim.world import SimWorld


@dataclass
class DayEnd:
    settlements: dict[str, SettlementResult] = field(default_factory=dict)
    #: The void the first terminal made (None when it had nothing to void).
    void: TxnResult | None = None
    #: The TID whose EDC lost a record, and the invoice it lost.
    lost: tuple[str, str] | None = None

    @property
    def approved_void_sen(self) -> int:
        return self.void.amount_sen if self.void is not None and self.void.approved else 0

    @property
    def ok(self) -> bool:
        return bool(self.settlements) and all(s.approved for s in self.settlements.values())


def close_the_day(sim: SimWorld, out: Callable[[str], None]) -> DayEnd:
    terminals = [t for t in sim.world.terminals if t.label == "ok"]
    day = DayEnd()
    out("\nday end: every EDC settles")
    for index, terminal in enumerate(terminals):
        edc = sim.edc(terminal)
        if index == 0:
            day.void = _void_one(sim, terminal)
            if day.void is not None:
                out(f"  {terminal.tid}: void of invoice {day.void.invoice}: rc {day.void.rc} "
                    f"{day.void.display}")
        elif index == 1:
            lost = _lose_one(sim, terminal)
            if lost is not None:
                day.lost = (terminal.tid, lost)
                out(f"  {terminal.tid}: the EDC lost its record of invoice {lost}")
        result = edc.settle()
        day.settlements[terminal.tid] = result
        path = "95 -> batch upload -> 960000" if result.uploaded else "920000"
        out(f"  {terminal.tid}: settlement of batch {result.batch_number} via {path}: "
            f"rc {result.rc} {result.display}")
    for tid, result in list(day.settlements.items())[:2]:
        out(f"\nthe settlement slip of {tid}:")
        for line in result.slip:
            out(f"    {line}")
    return day


def _void_one(sim: SimWorld, terminal: DemoTerminal) -> TxnResult | None:
    """Void the terminal's last approved, not yet voided purchase, with its own card."""
    edc = sim.edc(terminal)
    for entry in reversed(edc.batch.approved()):
        if entry.kind is not Kind.PURCHASE or entry.voided:
            continue
        card = sim.demo_card(entry.card)
        if card is None:
            continue
        sim.insert(edc, card)
        return edc.void(entry.invoice, card.pin)
    return None


def _lose_one(sim: SimWorld, terminal: DemoTerminal) -> str | None:
    """Drop one approved purchase from the EDC's memory (its flash failed)."""
    edc = sim.edc(terminal)
    for entry in edc.batch.approved():
        if entry.kind is Kind.PURCHASE and not entry.voided:
            edc.batch.forget(entry.invoice)
            return entry.invoice
    return None
