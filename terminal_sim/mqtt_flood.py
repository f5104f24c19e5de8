"""A flood of EDCs on one MQTT broker: many terminals, purchases back to back.

``run_flood(world, imk_ac, broker_host, broker_port, terminals=50, requests=40)``:
``terminals`` simulated EDCs, each on its own MQTT connection (:class:`MqttLink`) with
its own card, connect and log on, wait for one another, then each sends ``requests``
purchases as fast as the broker takes them (the next as soon as the last is answered
or timed out: an EDC has one request out at a time), and finally delivers any reversal
still pending (bounded).  Returns each terminal's history; the caller checks the
ledger (``check_invariants``) and the switch's counters.

For chaos harnesses and tests: the switch (``bpnt-switch serve --mqtt``, or an
in-process :class:`~switch.transports.mqtt.MqttTransport`) and the database behind it
are the caller's.  ``request_qos=0`` plays out-of-spec terminals whose purchases and
reversals the broker does not hold back for the switch (QoS 0 has no flow control);
their logons, before the flood, stay QoS 1.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from switch.admin.demo import PRICES_SEN, DemoCard, DemoTerminal, DemoWorld
from switch.clock import Clock
from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig, TxnResult
from terminal_sim.links.mqtt import MqttLink
from terminal_sim.world import SimWorld

#: The cheapest allowed item: many purchases fit one wallet.
FLOOD_BASKET = (BasketLine("SYR001", 1, PRICES_SEN["SYR001"]),)
#: Rounds of ``send_pending_reversal`` (3 attempts each) at the end of a terminal's run.
SETTLE_ROUNDS = 5
#: Logons tried before a terminal gives up (each bounded by the timeout).
LOGON_ATTEMPTS = 3
#: Every terminal connected and logged on before the flood starts, or it is abandoned.
START_TIMEOUT_S = 60.0


@dataclass
class TerminalHistory:
    tid: str
    card_index: int
    logon: TxnResult | None = None
    purchases: list[TxnResult] = field(default_factory=list)
    #: Requests this terminal published (logons, purchases, reversals): what the switch
    #: must account for, answered or shed.
    requests_sent: int = 0
    #: The STAN of a reversal still pending after the settle rounds (``None``: none).
    unsettled_reversal: str | None = None
    error: str | None = None

    @property
    def answered(self) -> int:
        """Purchases the host answered (approved or declined)."""
        return sum(1 for r in self.purchases if r.rc is not None)

    @property
    def timed_out(self) -> int:
        """Purchases sent and not answered in time (each left a reversal pending)."""
        return sum(1 for r in self.purchases if r.timed_out)

    @property
    def approved_sen(self) -> int:
        return sum(r.amount_sen for r in self.purchases if r.approved)


@dataclass
class FloodReport:
    histories: list[TerminalHistory]
    elapsed_s: float

    @property
    def purchases(self) -> int:
        return sum(len(h.purchases) for h in self.histories)

    @property
    def answered(self) -> int:
        return sum(h.answered for h in self.histories)

    @property
    def requests_sent(self) -> int:
        return sum(h.requests_sent for h in self.histories)

    @property
    def timed_out(self) -> int:
        return sum(h.timed_out for h in self.histories)

    @property
    def unsettled(self) -> list[str]:
        """TIDs left with a pending reversal or an error."""
        return [h.tid for h in self.histories
                if h.unsettled_reversal is not None or h.error is not None]

    def outcomes(self) -> Counter[str]:
        return Counter("approved" if r.approved else "timeout" if r.timed_out
                       else r.rc or r.display for h in self.histories for r in h.purchases)

    def verdict(self) -> str:
        rate = self.purchases / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"{len(self.histories)} terminals, {self.purchases} purchases in "
                f"{self.elapsed_s:.1f} s ({rate:.0f}/s): {self.answered} answered, "
                f"{self.timed_out} timed out, outcomes {dict(self.outcomes())}, "
                f"unsettled {self.unsettled or 'none'}")


def run_flood(world: DemoWorld, imk_ac: bytes, broker_host: str, broker_port: int, *,
              terminals: int, requests: int, timeout_s: float = 10.0, request_qos: int = 1,
              clock: Clock | None = None) -> FloodReport:
    """``terminals`` EDCs × ``requests`` purchases on the broker; each terminal's history.

    Terminal ``i`` is the world's ``i``-th active terminal with its ``i``-th active card
    (one card per terminal: a card is in one place at a time).
    """
    active = [t for t in world.terminals if t.label == "ok"]
    cards = world.cards_labelled("ok")
    assert terminals <= len(active) and terminals <= len(cards), \
        f"the world has {len(active)} terminals and {len(cards)} cards for {terminals}"
    # SimWorld only for its cards (one KksCard per PAN, so each ATC only moves forward).
    sim = SimWorld(world, imk_ac, broker_host, broker_port, timeout_s=timeout_s)
    histories = [TerminalHistory(active[i].tid, i) for i in range(terminals)]
    start = threading.Barrier(terminals + 1, timeout=START_TIMEOUT_S)
    threads = [threading.Thread(target=_terminal_run, name=f"flood-{h.tid}", args=(
        sim, active[i], cards[i], h, start, broker_host, broker_port, requests, timeout_s,
        request_qos, clock)) for i, h in enumerate(histories)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()  # broken: a terminal could not start, and its history says why
    started = time.monotonic()
    # Bounded: every exchange has its timeout; the worst case is all of them timing out.
    join_s = (requests + 3 * SETTLE_ROUNDS + 4) * (timeout_s + 1) + START_TIMEOUT_S
    for thread in threads:
        thread.join(max(0.0, join_s - (time.monotonic() - started)))
    for history, thread in zip(histories, threads, strict=True):
        if thread.is_alive():
            history.error = history.error or "still running at the deadline"
    return FloodReport(histories, time.monotonic() - started)


def _terminal_run(sim: SimWorld, terminal: DemoTerminal, card: DemoCard,
                  history: TerminalHistory, start: threading.Barrier, broker_host: str,
                  broker_port: int, requests: int, timeout_s: float, request_qos: int,
                  clock: Clock | None) -> None:
    link = MqttLink(broker_host, broker_port, terminal.tid, keepalive_s=10,
                    connect_timeout_s=timeout_s)
    edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=timeout_s),
              link, EmulatedReader(), clock=clock)
    try:
        if not link.wait_connected(START_TIMEOUT_S / 2):
            history.error = "no connection to the broker"
            start.abort()
            return
        logon = edc.logon()
        for _ in range(LOGON_ATTEMPTS - 1):
            if logon.approved:
                break
            logon = edc.logon()
        history.logon = logon
        if not logon.approved:
            history.error = f"logon: {logon.display}"
            start.abort()
            return
        start.wait()
        link.request_qos = request_qos  # the logon was set-up (QoS 1); this is the flood
        for _ in range(requests):
            sim.insert(edc, card)
            history.purchases.append(edc.purchase(FLOOD_BASKET, card.pin))
        for _ in range(SETTLE_ROUNDS):
            if edc.send_pending_reversal():
                break
        if edc.pending_reversal is not None:
            history.unsettled_reversal = edc.pending_reversal.text(11)
    except threading.BrokenBarrierError:
        history.error = history.error or "the flood never started (another terminal failed)"
    except Exception as exc:  # a history, not a traceback in a thread
        history.error = f"{type(exc).__name__}: {exc}"
    finally:
        history.requests_sent = link.requests_published
        link.close()
