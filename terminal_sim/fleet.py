"""A fleet of simulated EDCs doing real transactions in parallel (``make run``)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from switch.admin.demo import DemoCard, DemoTerminal
from terminal_sim.edc import TxnResult
from terminal_sim.world import SimWorld, random_basket

TIMEOUT = "timeout"
#: Cards the fleet leaves alone, so the named scenarios start from a full wallet.
RESERVED_FOR_SCENARIOS = 12


@dataclass
class FleetReport:
    by_rc: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    approved_purchase_sen: int = 0
    results: list[TxnResult] = field(default_factory=list)

    def add(self, result: TxnResult) -> None:
        self.by_rc[result.rc or (TIMEOUT if result.timed_out else "none")] += 1
        self.by_kind[result.kind] += 1
        if result.approved and result.kind == "purchase":
            self.approved_purchase_sen += result.amount_sen
        self.results.append(result)

    def merge(self, other: FleetReport) -> None:
        self.by_rc.update(other.by_rc)
        self.by_kind.update(other.by_kind)
        self.approved_purchase_sen += other.approved_purchase_sen
        self.results.extend(other.results)


def _drive_terminal(sim: SimWorld, terminal: DemoTerminal, cards: list[DemoCard],
                    count: int, seed: int) -> FleetReport:
    rng = random.Random(seed)
    edc = sim.edc(terminal)
    report = FleetReport()
    for _ in range(count):
        card = rng.choice(cards)
        sim.insert(edc, card)
        roll = rng.random()
        pin = card.pin if roll > 0.03 else f"{(int(card.pin) + 1) % 10**6:06d}"
        if roll < 0.12:
            result = edc.balance_inquiry(pin)
        else:
            result = edc.purchase(random_basket(rng), pin)
        report.add(result)
    edc.send_pending_reversal()
    return report


def run_fleet(sim: SimWorld, *, transactions: int, seed: int = 1) -> FleetReport:
    """Spread ``transactions`` over the active terminals, one thread each.

    Each terminal gets its own cards (a card is in one place at a time).
    """
    terminals = [t for t in sim.world.terminals if t.label == "ok"]
    cards = sim.world.cards_labelled("ok")[:-RESERVED_FOR_SCENARIOS]
    per_terminal = max(1, transactions // len(terminals))
    reports: list[FleetReport] = [FleetReport() for _ in terminals]

    def work(i: int) -> None:
        mine = cards[i :: len(terminals)]
        reports[i] = _drive_terminal(sim, terminals[i], mine, per_terminal, seed + i)

    threads = [threading.Thread(target=work, args=(i,), name=f"edc-{i}")
               for i in range(len(terminals))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    total = FleetReport()
    for report in reports:
        total.merge(report)
    return total
