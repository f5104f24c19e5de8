"""Locust users that are e-warong EDCs (FAILURES F1, F13).

Each user is one terminal of the demo world: its own TID and TMK, its own
customers' emulated KKS cards, a real :class:`~terminal_sim.edc.Edc` over a
blocking :class:`~terminal_sim.link.TcpLink` (Locust's gevent makes the sockets
cooperative).  The ISO 8583 code is the switch's own, through the EDC.

Every exchange is one Locust request event of type ``ISO8583``:

* RC 00 is a success named after the transaction (``purchase``, ``balance``,
  ``reversal``, ``logon``);
* a decline is a success under its own name (``purchase 51``, ``purchase 55``):
  the host did its job;
* a time-out, a broken link, an undelivered reversal, or an RC that means the
  host or the terminal is broken (:data:`FAILURE_RCS`) is a failure;
* a response the mix drops on purpose (``FaultyLink``) is ``purchase lost-response``,
  not a failure; the reversal the EDC then owes is sent before its next
  transaction and reported as ``reversal`` (a failure if it is not delivered).

Terminal state (STAN, keys, pending reversal, cards and what each KPM has left)
belongs to the TID and outlives a Locust user: a ramp-down stops users, a later
spike starts new ones on the same terminals.  At the end every pending reversal
is delivered (:meth:`LoadWorld.finish`); ``loadtest/locustfile.py`` writes what
the terminals saw approved to ``BPNT_LOAD_SUMMARY`` for ``loadtest.load`` to match
against the ledger.

With Locust workers (``BPNT_LOAD_WORKERS`` > 1) each worker process builds the
same world but drives only its share of the terminals (every N-th, by Locust's
worker index), so no TID is ever used by two processes.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore
from locust import User, between, task
from locust.env import Environment
from locust.runners import WorkerRunner

from switch.admin.demo import PRICES_SEN, DemoCard, DemoTerminal, build_world
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.edc import Edc, State, TxnResult
from terminal_sim.link import Faults, FaultyLink, Link, LinkError, LinkTimeout
from terminal_sim.world import ALLOWED_ITEMS, SimWorld, random_basket

log = logging.getLogger("bpnt.load")

REQUEST_TYPE = "ISO8583"
#: RCs that mean the host failed (91, 96) or the terminal/protocol is broken (12, 30,
#: 63, 94: none of them is in the mix): failures, not declines.
FAILURE_RCS = frozenset({"12", "30", "63", "91", "94", "96"})
#: How long a new user waits for a terminal a stopping user is still handing back.
ACQUIRE_TIMEOUT_S = 30.0
CHEAPEST_ITEM_SEN = min(PRICES_SEN[code] for code in ALLOWED_ITEMS)
#: More than any one period's allocation: a basket the wallet cannot pay (RC 51).
PREMIUM_RICE = "BRS010"


class TransactionFailed(Exception):
    """What Locust records as the failure of one request event."""


class MeteredLink:
    """Counts the bytes of the last response, for the event's ``response_length``."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.last_response_len = 0

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.last_response_len = 0
        response = self.inner.exchange(unit, timeout_s)
        self.last_response_len = len(response)
        return response

    def close(self) -> None:
        self.inner.close()


def fit_basket(rng: random.Random, balance_sen: int) -> list[BasketLine] | None:
    """A random food basket the KPM can pay with ``balance_sen``: the costliest
    quantities and lines go first; ``None`` when not even the cheapest item fits."""
    basket = random_basket(rng)
    while basket and sum(line.total_sen for line in basket) > balance_sen:
        basket.sort(key=lambda line: line.total_sen)
        top = basket[-1]
        if top.quantity > 1:
            basket[-1] = BasketLine(top.item_code, top.quantity - 1, top.unit_price_sen)
        else:
            basket.pop()
    if basket:
        return basket
    affordable = [code for code in ALLOWED_ITEMS if PRICES_SEN[code] <= balance_sen]
    if not affordable:
        return None
    code = max(affordable, key=PRICES_SEN.__getitem__)
    return [BasketLine(code, 1, PRICES_SEN[code])]


@dataclass
class Terminal:
    """One e-warong's EDC and its customers, for the whole run (module docstring)."""

    demo: DemoTerminal
    edc: Edc
    faults: Faults
    meter: MeteredLink
    cards: list[DemoCard]
    rng: random.Random
    #: What each card has left as far as this counter knows (DE 54 corrects it).
    balance_sen: dict[str, int] = field(default_factory=dict)

    def card_with_money(self) -> DemoCard | None:
        while self.cards:
            card = self.rng.choice(self.cards)
            if self.balance_sen[card.pan] >= CHEAPEST_ITEM_SEN:
                return card
            self.cards.remove(card)
        return None


@dataclass
class Tally:
    """What the terminals saw: approved purchases (to match the ledger) and outcomes."""

    approved_purchases: int = 0
    approved_purchase_sen: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    undelivered_reversals: int = 0
    #: Reversals still owed when the users stopped, delivered by :meth:`LoadWorld.finish`.
    reversals_at_end: int = 0
    #: Terminals found mid-transaction: Locust killed their user in a socket wait
    #: (a ramp-down or the end that did not wait for the task).  The EDC's pending
    #: reversal undoes whatever the host did with that request.
    interrupted: int = 0

    def add(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def total(cls, parts: list[dict[str, Any]]) -> Tally:
        """The sum of several processes' tallies (:meth:`as_dict` form)."""
        total = cls()
        for part in parts:
            total.approved_purchases += part["approved_purchases"]
            total.approved_purchase_sen += part["approved_purchase_sen"]
            total.undelivered_reversals += part["undelivered_reversals"]
            total.reversals_at_end += part["reversals_at_end"]
            total.interrupted += part["interrupted"]
            for name, count in part["outcomes"].items():
                total.outcomes[name] = total.outcomes.get(name, 0) + count
        return total


class LoadWorld:
    """The demo world as the load generator sees it: one per Locust process, which
    drives the active terminals ``share``, ``share + shares``, ... of the world."""

    def __init__(self, host: str, port: int, share: int = 0, shares: int = 1) -> None:
        settings = load_settings()
        kpm = int(os.environ.get("BPNT_LOAD_KPM", "4000"))
        terminal_count = int(os.environ.get("BPNT_LOAD_TERMINALS", "40"))
        timeout_s = float(os.environ.get("BPNT_LOAD_TIMEOUT_S", "10"))
        world = build_world(kpm_count=kpm, terminal_count=terminal_count)
        self.period_amount_sen = settings.period_amount_sen
        self.sim = SimWorld(world, Keyring.from_settings(settings).imk_ac, host, port,
                            timeout_s=timeout_s)
        self.tally = Tally()
        self.terminals: dict[str, Terminal] = {}
        active = [t for t in world.terminals if t.label == "ok"]
        cards = world.cards_labelled("ok")
        for i, demo in enumerate(active):
            if i % shares != share:
                continue
            edc = self.sim.edc(demo)
            assert isinstance(edc.link, FaultyLink)
            meter = MeteredLink(edc.link.inner)
            edc.link.inner = meter
            mine = cards[i :: len(active)]
            self.terminals[demo.tid] = Terminal(
                demo, edc, self.sim.faults(demo), meter, list(mine), random.Random(i),
                {c.pan: settings.period_amount_sen for c in mine})
        self.free = list(self.terminals)
        #: Test stop can come twice at once (the shape ending while a stop is asked for).
        self._finishing = BoundedSemaphore()

    def acquire(self) -> Terminal | None:
        deadline = time.monotonic() + ACQUIRE_TIMEOUT_S
        while not self.free:
            if time.monotonic() > deadline:
                return None
            gevent.sleep(0.1)
        terminal = self.terminals[self.free.pop(0)]
        self.recover(terminal)
        return terminal

    def recover(self, terminal: Terminal) -> None:
        """Back to idle after a killed user: the half-read connection is dropped (its
        late answer must not be taken for the next request's) and the card powered off."""
        edc = terminal.edc
        if edc.state is not State.IDLE:
            self.tally.interrupted += 1
            edc.link.close()
            edc.reader.power_off()
            edc.state = State.IDLE
            terminal.faults.drop_responses = 0

    def release(self, terminal: Terminal) -> None:
        self.free.append(terminal.demo.tid)

    def finish(self, report: Callable[[str, float, Exception | None], None]) -> Tally:
        """Deliver every pending reversal and close the links; one caller at a time,
        and again is harmless (nothing is left owed)."""
        with self._finishing:
            for terminal in self.terminals.values():
                self.recover(terminal)
                if terminal.edc.pending_reversal is not None:
                    started = time.perf_counter()
                    self.tally.reversals_at_end += 1
                    ok = terminal.edc.send_pending_reversal()
                    self.tally.add("reversal" if ok else "reversal undelivered")
                    self.tally.undelivered_reversals += not ok
                    report("reversal", started, None if ok else TransactionFailed(
                        "reversal not delivered"))
            self.sim.close()
        return self.tally


_WORLD: LoadWorld | None = None


def current_world() -> LoadWorld | None:
    """This process's world, once its first user made it."""
    return _WORLD


def worker_share(environment: Environment) -> tuple[int, int]:
    """(this process's share, number of shares): Locust's worker index among
    ``BPNT_LOAD_WORKERS`` on a worker, (0, 1) in a lone Locust process."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return 0, 1
    shares = int(os.environ.get("BPNT_LOAD_WORKERS", "1"))
    if not 0 <= runner.worker_index < shares:
        raise RuntimeError(f"worker index {runner.worker_index} outside 0..{shares - 1} "
                           "(BPNT_LOAD_WORKERS must be the number of workers)")
    return runner.worker_index, shares


def load_world(environment: Environment, host: str) -> LoadWorld:
    """The process's one world, made by the first user (the host is known by then)."""
    global _WORLD
    if _WORLD is None:
        address = host.removeprefix("tcp://").rstrip("/")
        name, _, port = address.rpartition(":")
        share, shares = worker_share(environment)
        _WORLD = LoadWorld(name or "127.0.0.1", int(port or os.environ["BPNT_LOAD_PORT"]),
                           share, shares)
        log.info("world: %d terminals of share %d/%d", len(_WORLD.terminals), share, shares)
    return _WORLD


class EdcUser(User):
    """One e-warong EDC serving its KPM (module docstring)."""

    wait_time = between(
        float(os.environ.get("BPNT_LOAD_WAIT_MIN_S", "0.05")),
        float(os.environ.get("BPNT_LOAD_WAIT_MAX_S", "0.5")),
    )
    terminal: Terminal | None = None

    def on_start(self) -> None:
        self.world = load_world(self.environment, self.host or "")
        self.terminal = self.world.acquire()
        if self.terminal is None:
            log.warning("no free terminal for a new user after %.0f s", ACQUIRE_TIMEOUT_S)

    def on_stop(self) -> None:
        if self.terminal is not None:
            self.world.release(self.terminal)
            self.terminal = None

    # -- reporting -------------------------------------------------------------------

    def _fire(self, name: str, started: float, exc: Exception | None = None) -> None:
        assert self.terminal is not None
        self.world.tally.add(name if exc is None else f"{name} FAILED")
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, exception=exc, context={},
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=self.terminal.meter.last_response_len)

    def _report(self, result: TxnResult, started: float, *, injected_drop: bool = False) -> None:
        """One transaction's outcome as one event (module docstring)."""
        kind = result.kind
        if result.rc == codes.APPROVED:
            self._fire(kind, started)
            if kind == "purchase":
                self.world.tally.approved_purchases += 1
                self.world.tally.approved_purchase_sen += result.amount_sen
        elif result.rc is not None:
            failed = result.rc in FAILURE_RCS
            self._fire(f"{kind} {result.rc}", started,
                       TransactionFailed(f"RC {result.rc}") if failed else None)
        elif injected_drop:
            self._fire(f"{kind} lost-response", started)
        elif result.timed_out:
            self._fire(kind, started, LinkTimeout(result.display))
        else:
            self._fire(kind, started, TransactionFailed(result.display))

    # -- the terminal's housekeeping ---------------------------------------------------

    def _prelude(self, terminal: Terminal) -> bool:
        """Deliver a reversal the EDC owes and log on if needed, each its own event;
        False when the terminal cannot do business right now."""
        edc = terminal.edc
        if edc.pending_reversal is not None:
            started = time.perf_counter()
            delivered = edc.send_pending_reversal()
            self._fire("reversal", started, None if delivered else LinkError(
                "reversal not delivered"))
            if not delivered:
                return False
        if not edc.logged_on:
            started = time.perf_counter()
            result = edc.logon()
            self._report(result, started)
            return result.approved
        return True

    def _card(self) -> tuple[Terminal, DemoCard] | None:
        terminal = self.terminal
        if terminal is None or not self._prelude(terminal):
            return None
        card = terminal.card_with_money()
        if card is None:
            return None
        self.world.sim.insert(terminal.edc, card)
        return terminal, card

    def _purchase(self, terminal: Terminal, card: DemoCard, basket: list[BasketLine],
                  pin: str, *, drop_response: bool = False) -> TxnResult:
        dropped_before = terminal.faults.log.count("response dropped")
        terminal.faults.drop_responses = 1 if drop_response else 0
        started = time.perf_counter()
        result = terminal.edc.purchase(basket, pin)
        terminal.faults.drop_responses = 0
        injected = terminal.faults.log.count("response dropped") > dropped_before
        self._report(result, started, injected_drop=injected)
        if result.balance_sen is not None:
            terminal.balance_sen[card.pan] = result.balance_sen
        return result

    # -- the mix -----------------------------------------------------------------------

    @task(70)
    def purchase(self) -> None:
        """A KPM buys a food basket within what is left on the card."""
        picked = self._card()
        if picked is None:
            return
        terminal, card = picked
        basket = fit_basket(terminal.rng, terminal.balance_sen[card.pan])
        if basket is not None:
            self._purchase(terminal, card, basket, card.pin)

    @task(12)
    def balance(self) -> None:
        """Cek saldo: how much is left this period."""
        picked = self._card()
        if picked is None:
            return
        terminal, card = picked
        started = time.perf_counter()
        result = terminal.edc.balance_inquiry(card.pin)
        self._report(result, started)
        if result.balance_sen is not None:
            terminal.balance_sen[card.pan] = result.balance_sen

    @task(5)
    def wrong_pin_then_right(self) -> None:
        """A mistyped PIN (RC 55), then the KPM tries again with the right one."""
        picked = self._card()
        if picked is None:
            return
        terminal, card = picked
        basket = fit_basket(terminal.rng, terminal.balance_sen[card.pan])
        if basket is None:
            return
        wrong = f"{(int(card.pin) + 1) % 10**6:06d}"
        self._purchase(terminal, card, basket, wrong)
        self._purchase(terminal, card, basket, card.pin)

    @task(5)
    def over_balance(self) -> None:
        """A basket bigger than any period's allocation: RC 51, no money moves."""
        picked = self._card()
        if picked is None:
            return
        terminal, card = picked
        quantity = self.world.period_amount_sen // PRICES_SEN[PREMIUM_RICE] + 1
        self._purchase(terminal, card, [BasketLine(PREMIUM_RICE, quantity,
                                                   PRICES_SEN[PREMIUM_RICE])], card.pin)

    @task(3)
    def lost_response(self) -> None:
        """FAILURES F13: the host debits, the answer is lost, the EDC owes a reversal
        (sent before its next transaction, reported as ``reversal``)."""
        picked = self._card()
        if picked is None:
            return
        terminal, card = picked
        basket = fit_basket(terminal.rng, terminal.balance_sen[card.pan])
        if basket is not None:
            self._purchase(terminal, card, basket, card.pin, drop_response=True)

