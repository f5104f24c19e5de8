"""``serial-noise`` (HOST_SPEC §1 serial, FAILURES F8): serial EDCs on noisy lines
paced at a real 9600 baud, each on its own :class:`~terminal_sim.links.cable.NoisyCable`
(two ptys and a relay, 960 bytes/s each way, each byte's bit flipped with the line's
corruption rate) to its own ``bpnt-switch serve`` (one serial port per process, so
one switch per line; they share the database).

1. phase 1, 0.05 % byte corruption, until ``phase1`` purchases (100) were answered:
   a damaged frame costs a NAK and a retransmission, the purchases complete;
2. phase 2, 1 % for ``phase2_s`` (20 s): a 215-byte frame arrives intact about 11 %
   of the time (0.99^215), so most purchases fail: no ACK after 3 retransmissions
   (link down) or no answer in time, each leaving the EDC idle with the reversal
   pending, which goes first, before the next purchase, on the same noisy line;
3. then the line recovers (0 %) and every pending reversal is delivered.

Promised: phase 1 answers its purchases; phase 2 fails some, and every failed one
(link down, no answer in time, or an answer the LRC let through damaged and the MAC
refused) leaves its reversal pending (the terminal's next exchange is that reversal);
a request the LRC let through damaged is declined by the switch (RC 63 or 30, no
money moved); every reversal pending when the line recovered is delivered (00)
after it; nothing pending at the end; the checker passes (no money lost).
``--param baud=``, ``phase1_rate=``, ``phase2_rate=``, ``seed=``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from terminal_sim.links.cable import NoisyCable
from terminal_sim.links.pty import open_terminal_port
from terminal_sim.links.serial import SerialLink

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import LINK_DOWN, PURCHASE, REVERSAL, TIMEOUT, Exchange
from ..metrics import Figures, span_figures
from . import Scenario, register

#: In a switch's log once its serial line is open (switch/server.py).
SERIAL_READY = "bpnt-switch on serial"
#: Phase 1 ends at this fraction of the load at the latest (its count not reached).
PHASE1_LATEST = 0.55
POLL_S = 0.2


@dataclass
class LineCounts:
    """The lines' counters at a moment (summed over the cables and the terminals)."""

    bytes_carried: int = 0
    bytes_corrupted: int = 0
    naks_received: int = 0
    retransmits: int = 0
    links_down: int = 0

    def __sub__(self, other: LineCounts) -> LineCounts:
        return LineCounts(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(),
                                                   strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.bytes_carried, self.bytes_corrupted, self.naks_received,
                self.retransmits, self.links_down)


@dataclass
class Phase:
    label: str
    rate: float
    start_s: float
    end_s: float = 0.0
    at_start: LineCounts = field(default_factory=LineCounts)
    at_end: LineCounts = field(default_factory=LineCounts)


@register
class SerialNoise(Scenario):
    name = "serial-noise"
    summary = ("serial EDCs at a real 9600 baud on noisy lines: 0.05 % byte corruption "
               "for 100 purchases, then 1 % (link down, reversal pending), then clean")
    engines = ("sqlite",)
    #: one line a terminal, one purchase a second on each; a serial EDC's time-out
    full_settings = {"terminals": 4, "rate_per_s": 4.0, "duration_s": 60.0,
                     "timeout_s": 10.0}
    ci_settings = {"terminals": 2, "rate_per_s": 2.0, "duration_s": 32.0}
    ci_params = {"phase1": "24", "phase2_s": "10"}

    def __init__(self) -> None:
        self.cables: list[NoisyCable] = []
        self.links: list[SerialLink] = []
        self.phases: list[Phase] = []
        self.phase1_wanted = 0
        self.checks: list[Acceptance] = []
        self.rows: list[tuple[Phase, Figures, LineCounts]] = []

    def configure(self, cfg: RunConfig) -> RunConfig:
        return replace(cfg, switches=cfg.terminals)  # a switch process per serial line

    def before_switches(self, ctx: FaultContext) -> None:
        baud = int(ctx.cfg.params.get("baud", "9600"))
        seed = int(ctx.cfg.params.get("seed", "1"))
        for index in range(ctx.cfg.switches):
            cable = NoisyCable(baud=baud, seed=seed + 2 * index).start()
            ctx.stack.callback(cable.close)  # after the switches stop
            self.cables.append(cable)
            ctx.switches.slot_env[index] = {"BPNT_SERIAL_PORT": cable.switch_path,
                                            "BPNT_SERIAL_BAUD": str(baud)}
        ctx.switches.ready_text = SERIAL_READY
        ctx.mark(f"{len(self.cables)} noisy cables at {baud} baud",
                 ", ".join(f"{c.terminal_path} <-> {c.switch_path}" for c in self.cables))

    def setup(self, ctx: FaultContext) -> None:
        baud = int(ctx.cfg.params.get("baud", "9600"))

        def connect(_tid: str, index: int) -> SerialLink:
            link = SerialLink(open_terminal_port(self.cables[index].terminal_path, baud))
            self.links.append(link)
            return link

        ctx.connect = connect

    def counts(self) -> LineCounts:
        c = LineCounts()
        for cable in self.cables:
            c.bytes_carried += cable.to_switch.bytes_carried + cable.to_terminal.bytes_carried
            c.bytes_corrupted += cable.to_switch.bytes_corrupted + \
                cable.to_terminal.bytes_corrupted
        for link in self.links:
            stats = link.channel.connection.stats
            c.naks_received += stats.naks_received
            c.retransmits += stats.retransmits
            c.links_down += stats.links_down
        return c

    def _phase(self, ctx: FaultContext, label: str, rate: float) -> Phase:
        for cable in self.cables:
            cable.byte_error_rate = rate
        phase = Phase(label, rate, ctx.now_s(), at_start=self.counts())
        ctx.mark(f"{label}: byte corruption {rate:.2%}")
        self.phases.append(phase)
        return phase

    def _end(self, ctx: FaultContext, phase: Phase) -> None:
        phase.end_s, phase.at_end = ctx.now_s(), self.counts()

    def inject(self, ctx: FaultContext) -> None:
        cfg = ctx.cfg
        self.phase1_wanted = int(cfg.params.get("phase1", "100"))
        phase2_s = cfg.param_s("phase2_s", 20.0)
        latest_s = ctx.at_fraction(PHASE1_LATEST)
        ctx.wait_until(ctx.load_start_s)
        # phase 1 is the line working as lines do (marked, not a fault window); phase 2
        # is the fault, whose end the recovery is measured from
        phase = self._phase(ctx, "phase 1", float(cfg.params.get("phase1_rate", "0.0005")))
        while self._answered_since(ctx, phase.start_s) < self.phase1_wanted \
                and ctx.now_s() < latest_s:
            ctx.sleep(POLL_S)  # the count is read off the history: polled, bounded
        self._end(ctx, phase)
        with ctx.fault("phase 2: 1 %"):
            phase = self._phase(ctx, "phase 2", float(cfg.params.get("phase2_rate", "0.01")))
            ctx.sleep(phase2_s)
            self._end(ctx, phase)
        phase = self._phase(ctx, "phase 3 (recovered)", 0.0)
        ctx.mark("the line recovers")
        ctx.wait_until(ctx.load_end_s)
        ctx.mark("phase 3 counted to the end of the load; the settle follows")

    @staticmethod
    def _answered_since(ctx: FaultContext, start_s: float) -> int:
        return sum(e.op == PURCHASE and e.outcome == "answered" and e.sent_s >= start_s
                   for e in ctx.history.snapshot())

    def judge(self, cfg: RunConfig, fig: Figures,
              exchanges: Sequence[Exchange]) -> list[Acceptance]:
        if len(self.phases) < 3:
            return [Acceptance("the three phases ran", False, f"{len(self.phases)} ran")]
        one, two, three = self.phases
        three.end_s = max((e.done_s for e in exchanges), default=three.start_s)
        three.at_end = self.counts()
        self.rows = [(p, span_figures(exchanges, p.start_s, p.end_s if p is not three
                                      else float("inf")), p.at_end - p.at_start)
                     for p in self.phases]
        f1, f2 = self.rows[0][1], self.rows[1][1]
        answered_1 = sum(f1.by_rc.values())
        failed_2 = [e for e in exchanges if e.op == PURCHASE and e.indeterminate
                    and two.start_s <= e.sent_s < two.end_s]
        unclean = [e.key for e in failed_2 if not _reversal_next(exchanges, e)]
        endings = Counter(e.outcome for e in failed_2)
        pending_at_3 = _pending_at(exchanges, three.start_s)
        delivered = {e.key for e in exchanges if e.op == REVERSAL and e.approved
                     and e.done_s >= three.start_s}
        self.checks = [
            Acceptance(f"phase 1 ({one.rate:.2%}): {self.phase1_wanted} purchases answered",
                       answered_1 >= self.phase1_wanted,
                       f"{answered_1} answered ({f1.approved} approved) of {f1.sent} sent in "
                       f"{one.end_s - one.start_s:.1f} s"),
            Acceptance(f"phase 2 ({two.rate:.2%}): the noise fails purchases",
                       bool(failed_2), f"{len(failed_2)} of {f2.sent} sent failed, "
                                       f"{f2.approved} approved"),
            Acceptance("phase 2: every failed purchase left its reversal pending (the "
                       "terminal's next exchange)", not unclean,
                       f"{len(failed_2) - len(unclean)} of {len(failed_2)} ({_counts(endings)})"
                       + (f"; not: {', '.join(unclean[:5])}" if unclean else "")),
            Acceptance("every reversal pending when the line recovered delivered (00) "
                       "after it", pending_at_3 <= delivered,
                       f"{len(pending_at_3)} pending, {len(pending_at_3 & delivered)} "
                       "delivered"),
            Acceptance("no reversal pending at the end", fig.reversals_pending == 0,
                       f"{fig.reversals_pending} pending"),
        ]
        return self.checks

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        lines = ["## Phases", "",
                 f"{len(self.cables)} serial lines at {self.cables[0].baud if self.cables else 0}"
                 " baud (8N1), one EDC and one switch process each.", "",
                 "| phase | byte corruption | s | purchases sent | approved | declined (RC) | "
                 "link down | timed out | other | reversals sent / 00 | bytes carried / "
                 "corrupted | NAKs / retransmissions / links down (terminals) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for phase, f, line in self.rows:
            declined = Counter({rc: n for rc, n in f.by_rc.items() if rc != "00"})
            other = Counter({k: n for k, n in f.by_outcome.items()
                             if k not in (LINK_DOWN, TIMEOUT)})
            end_s = phase.end_s
            lines.append(
                f"| {phase.label} | {phase.rate:.2%} | {end_s - phase.start_s:.1f} | "
                f"{f.sent} | {f.approved} | {_counts(declined)} | {f.by_outcome[LINK_DOWN]} | "
                f"{f.by_outcome[TIMEOUT]} | {_counts(other)} | {f.reversals_sent} / "
                f"{f.reversals_answered_00} | {line.bytes_carried} / {line.bytes_corrupted} | "
                f"{line.naks_received} / {line.retransmits} / {line.links_down} |")
        lines += ["", "Phase 3 runs from the line's recovery to the end of the settle."]
        return lines

    def summary_lines(self) -> list[str]:
        return [f"{phase.label} ({phase.rate:.2%}): {f.sent} sent, {f.approved} approved, "
                f"{f.by_outcome[LINK_DOWN]} link down, {f.by_outcome[TIMEOUT]} timed out; "
                f"reversals {f.reversals_sent} sent, {f.reversals_answered_00} 00; "
                f"{line.bytes_corrupted} of {line.bytes_carried} bytes corrupted"
                for phase, f, line in self.rows]


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "-"


def _reversal_next(exchanges: Sequence[Exchange], e: Exchange) -> bool:
    """The terminal's next purchase or reversal after ``e`` is ``e``'s reversal."""
    later = [x for x in exchanges if x.tid == e.tid and x.op in (PURCHASE, REVERSAL)
             and x.sent_s > e.sent_s]
    following = min(later, key=lambda x: x.sent_s, default=None)
    return following is not None and following.op == REVERSAL and following.key == e.key


def _pending_at(exchanges: Sequence[Exchange], at_s: float) -> set[str]:
    """Keys whose reversal was owed at run second ``at_s``: an indeterminate purchase
    before it with no reversal answered 00 before it."""
    owed = {e.key for e in exchanges if e.op == PURCHASE and e.indeterminate
            and e.done_s <= at_s}
    settled = {e.key for e in exchanges if e.op == REVERSAL and e.approved and e.done_s <= at_s}
    return owed - settled
