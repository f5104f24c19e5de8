"""EDC load that records history: N terminals, purchases at a target rate for a
bounded time, then their pending reversals delivered once the fault is gone.

Each terminal is one thread (an EDC does one thing at a time, over a blocking link)
with its own cards.  Terminal ``i`` of ``n`` is due a purchase every ``n / rate``
seconds, the fleet's ticks spread evenly; a terminal held up past its next tick (a
time-out) starts at once, and ticks it missed entirely are dropped (recorded as
skips), not fired in a burst (a queue of KPM does not all swipe at once when the host
comes back).  With a fixed number of purchases instead (``LoadPlan.purchases``: a
closed loop) each terminal sends its share back to back, the next as soon as the last
is answered or given up, until its share is done or the load's time is up.

How a terminal reaches the host is the caller's: a :data:`Connect` factory gives
each terminal its link (TCP to a switch, through a fault proxy, MQTT, serial).
Logon happens over whatever link the fleet was built with, before the clock starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from loadtest.bench import BenchCard
from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc
from terminal_sim.link import Link

from .history import History
from .terminal import ChaosTerminal, PaymentCard

#: (TID, terminal index) -> the link that terminal uses.
Connect = Callable[[str, int], Link]
#: Pause between two attempts at a pending reversal while settling.
SETTLE_RETRY_S = 0.25
#: How long after its deadline a terminal thread may take to notice (one exchange).
JOIN_GRACE_S = 5.0


@dataclass(frozen=True)
class LoadPlan:
    rate_per_s: float
    #: Run-clock seconds: purchases are offered from ``start_s`` to ``end_s``.
    start_s: float
    end_s: float
    #: Run-clock second by which every reversal must be delivered (or left pending).
    settle_deadline_s: float
    #: A closed loop: this many purchases in all, back to back, instead of the rate
    #: (``end_s`` then bounds the load).
    purchases: int | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def share(self, index: int, terminals: int) -> int:
        """Terminal ``index``'s share of a closed loop's purchases (the first ones get
        the remainder)."""
        assert self.purchases is not None
        return self.purchases // terminals + (index < self.purchases % terminals)


def build_fleet(edcs: list[tuple[Edc, EmulatedReader]], cards: list[BenchCard],
                imk_ac: bytes, basket: list[BasketLine], history: History, *,
                timeout_s: float, connect: Connect | None = None) -> list[ChaosTerminal]:
    """A :class:`ChaosTerminal` per logged-on EDC; the cards dealt round-robin (a card
    is at one terminal only, so its ATC rises in the order its terminal uses it);
    ``connect``: each terminal's link from now on (default: the one it logged on with)."""
    assert len(cards) >= len(edcs), "at least one card per terminal"
    fleet = []
    for index, (edc, reader) in enumerate(edcs):
        mine = [PaymentCard(KksCard(profile_for(c.pan, c.psn, c.expiry_yymm, imk_ac)), c.pin)
                for c in cards[index::len(edcs)]]
        if connect is not None:
            edc.link.close()
            edc.link = connect(edc.config.tid, index)
        fleet.append(ChaosTerminal(edc, reader, mine, basket, history, timeout_s=timeout_s))
    return fleet


class FleetLoad:
    """The fleet's threads: ``start()``, then ``allow_settling()`` once the fault is
    over, then ``join()``; ``stop()`` ends them early (abort)."""

    def __init__(self, fleet: list[ChaosTerminal], plan: LoadPlan, history: History) -> None:
        assert fleet and plan.rate_per_s > 0
        self.fleet = fleet
        self.plan = plan
        self.history = history
        self._stop = threading.Event()
        self._settle = threading.Event()
        self._offering = len(fleet)
        self._offered = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                          name=f"chaos-edc-{terminal.tid}")
                         for i, terminal in enumerate(fleet)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def allow_settling(self) -> None:
        """The fault is gone: terminals may deliver what they still owe."""
        self._settle.set()

    def stop(self) -> None:
        self._stop.set()
        self._settle.set()

    def wait_offered(self, until_s: float) -> bool:
        """Wait until every terminal has offered all its purchases (a closed loop ends
        when the shares are done), at most until run second ``until_s``."""
        remaining = until_s - self.history.clock.now_s()
        return self._offered.wait(max(0.0, remaining))

    def join(self) -> bool:
        """Wait (bounded by the settle deadline) for every thread; True when all ended."""
        clock = self.history.clock
        for thread in self._threads:
            remaining = self.plan.settle_deadline_s + JOIN_GRACE_S - clock.now_s()
            thread.join(max(0.0, remaining))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def pending(self) -> int:
        return sum(terminal.pending is not None for terminal in self.fleet)

    # -- one terminal's thread -----------------------------------------------------------

    def _run(self, index: int) -> None:
        terminal = self.fleet[index]
        try:
            try:
                if self.plan.purchases is None:
                    self._offer(terminal, index)
                else:
                    self._offer_back_to_back(terminal, index)
            finally:
                with self._lock:
                    self._offering -= 1
                    if self._offering == 0:
                        self._offered.set()
            self._deliver_reversals(terminal)
        finally:
            terminal.edc.link.close()

    def _offer_back_to_back(self, terminal: ChaosTerminal, index: int) -> None:
        """A closed loop: this terminal's share, each purchase as soon as the last ended
        (one not started, its reversal still owed, waits a moment before the next try)."""
        clock, plan = self.history.clock, self.plan
        left = plan.share(index, len(self.fleet))
        if self._stop.wait(max(0.0, plan.start_s - clock.now_s())):
            return
        while left > 0 and not self._stop.is_set() and clock.now_s() < plan.end_s:
            if terminal.purchase(clock.now_s()):
                left -= 1
            else:
                self._stop.wait(SETTLE_RETRY_S)

    def _offer(self, terminal: ChaosTerminal, index: int) -> None:
        clock, plan = self.history.clock, self.plan
        period_s = len(self.fleet) / plan.rate_per_s
        due_s = plan.start_s + period_s * index / len(self.fleet)
        while due_s < plan.end_s:
            if self._stop.wait(max(0.0, due_s - clock.now_s())):
                return
            terminal.purchase(due_s)
            due_s += period_s
            now_s = clock.now_s()
            if now_s - due_s > period_s:  # held up past more than one tick: drop those
                missed = int((now_s - due_s) / period_s)
                for k in range(missed):
                    if due_s + k * period_s < plan.end_s:
                        self.history.skip(terminal.tid, "held up past its tick")
                due_s += period_s * missed

    def _deliver_reversals(self, terminal: ChaosTerminal) -> None:
        clock = self.history.clock
        wait_s = self.plan.settle_deadline_s - clock.now_s()
        if terminal.pending is None or not self._settle.wait(max(0.0, wait_s)):
            return
        while terminal.pending is not None and not self._stop.is_set() \
                and clock.now_s() < self.plan.settle_deadline_s:
            if not terminal.try_reversal():
                self._stop.wait(SETTLE_RETRY_S)
