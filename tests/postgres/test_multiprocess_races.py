"""Three ``bpnt-switch serve`` processes on one PostgreSQL database, racing (issue 17).

With no global writer lock, host batches of several processes commit at once: each
holds its terminals' and cards' advisory locks, and the rows that several keys share
(a wallet of two cards, an e-warong's payable account, its stock) change only by
conditional UPDATEs (:mod:`switch.host.store`).  Real processes over TCP, no mocks:

* the same MAC'd unit to all three at once debits once, all three answers identical;
* a purchase, its reversal and a replay of the purchase, each on another process;
* one wallet drawn on by two or three cards at once, for more than it holds;
* a seeded random mix (``BPNT_RACE_SEED`` replays one) of purchases, duplicates,
  reversals (some racing their original), cards of one wallet at once and balance
  inquiries, in waves of 3 to 8 sends, checked against a model of what each terminal
  was answered, the request records and transfers, the wallets and the audit chains.

Every test's teardown checks the ledger's invariants and prints how often the
switches logged a lost race, a deadlock or an unavailable ledger.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from switch.admin.demo import DemoCard, luhn_complete
from switch.admin.registry import Registry
from switch.db.audit import verify
from switch.db.tables import Account, Card, Kpm, RequestRecord, Transfer
from switch.ledger.invariants import check_invariants
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, decode_balance
from switch.protocol.message import Message
from switch.protocol.unit import decode_unit
from switch.security.keys import pan_token
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import free_port, start_switch, stop_switch
from terminal_sim.edc import Edc, State, TxnResult
from terminal_sim.link import TcpLink
from tests.postgres.world import PERIOD_SEN, SeededWorld, seed, send_at_once

PROCESSES = 3
#: Active terminals of the seeded world (two e-warongs of two terminals each).
TERMINALS = 4
TIMEOUT_S = 15.0
ROUNDS = 8
TEMPE = BasketLine("TMP001", 1, 500_000)
#: 65 % of a wallet: of two such purchases only one fits.
BIG = BasketLine("BRS005", 2, 6_500_000)
#: 38 % of a wallet: of three only two fit.
THIRD = BasketLine("AYM010", 2, 3_800_000)
#: What the switches log when batches collide, counted after every test.
LOG_MARKERS = ("lost a race", "deadlock", "unavailable", "closing the connection")

pytestmark = pytest.mark.slow


@dataclass
class Switches:
    """Three switch processes on one seeded database, and the test's side of them."""

    world: SeededWorld
    ports: list[int]
    logs: list[Path]
    links: dict[tuple[int, int], TcpLink] = field(default_factory=dict)
    edcs: dict[int, Edc] = field(default_factory=dict)

    def link(self, process: int, slot: int = 0) -> TcpLink:
        """Connection number ``slot`` to ``process`` (one per send in flight)."""
        if (process, slot) not in self.links:
            self.links[process, slot] = TcpLink("127.0.0.1", self.ports[process])
        return self.links[process, slot]

    def edc(self, terminal: int, card: DemoCard) -> Edc:
        """The EDC of ``world.terminal(terminal)`` with ``card`` inserted; logged on
        the first time (through process ``terminal % 3``), its own keys from then on."""
        world = self.world
        edc = self.edcs.get(terminal)
        if edc is None:
            edc = world.edc(self.link(terminal % PROCESSES, slot=100 + terminal), card,
                            world.terminal(terminal))
            assert edc.ensure_logged_on()
            self.edcs[terminal] = edc
        else:
            assert isinstance(edc.reader, EmulatedReader)
            edc.reader.swap(world.kks(card))
        return edc

    def at_once(self, sends: list[tuple[int, bytes]]) -> list[bytes]:
        """Send each unit to its process on a connection of its own, all released
        together; the replies in the order of ``sends``."""
        slots: Counter[int] = Counter()
        pairs = []
        for process, unit in sends:
            pairs.append((self.link(process, slots[process]), unit))
            slots[process] += 1
        return _at_once(pairs)

    def close(self) -> None:
        for link in self.links.values():
            link.close()


@pytest.fixture
def switches(pg_url: str, tmp_path: Path) -> Iterator[Switches]:
    world = seed(pg_url, terminal_count=TERMINALS)
    procs, ports, logs = [], [], []
    three = Switches(world, ports, logs)
    try:
        for n in range(PROCESSES):
            ports.append(free_port())
            logs.append(tmp_path / f"switch{n}.log")
            procs.append(start_switch(pg_url, ports[-1], logs[-1]))
        yield three
    finally:
        three.close()
        for proc in procs:
            stop_switch(proc)
        print(f"switch logs: {_log_markers(logs)}")
        report = check_invariants(world.db)
        world.db.dispose()
        verdict = report.summary()  # always rendered: PostgreSQL sums arrive as Decimal
        assert report.ok, verdict


def _log_markers(logs: list[Path]) -> dict[str, int]:
    counts = dict.fromkeys(LOG_MARKERS, 0)
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").lower().splitlines():
            for marker in LOG_MARKERS:
                counts[marker] += marker in line
    return counts


def _at_once(sends: list[tuple[TcpLink, bytes]]) -> list[bytes]:
    return send_at_once(sends, TIMEOUT_S)


# -- 1. the same unit to three processes -------------------------------------------------


def test_same_unit_to_three_processes_debits_once(switches: Switches) -> None:
    world = switches.world
    card = world.card()
    edc = switches.edc(0, card)
    for _ in range(ROUNDS):
        unit = edc.prepare_purchase([TEMPE], card.pin)
        answers = switches.at_once([(p, unit) for p in range(PROCESSES)])
        assert _rc(answers[0]) == codes.APPROVED
        assert answers == [answers[0]] * PROCESSES  # same RC, RRN, balance and MAC
    assert _wallet_sen(world, card.pan) == PERIOD_SEN - ROUNDS * TEMPE.total_sen
    assert _transfers_from_wallet(world, card.pan) == ROUNDS
    with world.db.transaction() as session:
        assert verify(session, world.keys.audit_key).ok


# -- 2. a reversal racing its original and a replay of it ---------------------------------

#: (purchase, reversal, replay of the purchase): each process in each role.
ROLES = list(itertools.permutations(range(PROCESSES)))


def test_reversal_racing_its_original_and_a_replay_on_three_processes(
        switches: Switches) -> None:
    world = switches.world
    card = world.card(index=1)
    edc = switches.edc(0, card)
    outcomes: Counter[str] = Counter()
    for n in range(2 * len(ROLES)):
        purchaser, reverser, replayer = ROLES[n % len(ROLES)]
        before = _wallet_sen(world, card.pan)
        unit = edc.prepare_purchase([TEMPE], card.pin)
        reversal = _reversal_of(edc, unit)
        purchase_reply, reversal_reply, replay_reply = switches.at_once(
            [(purchaser, unit), (reverser, reversal), (replayer, unit)])
        rc = _rc(purchase_reply)
        outcomes[rc] += 1
        assert _rc(reversal_reply) == codes.APPROVED, f"round {n}"
        assert rc in (codes.APPROVED, codes.DO_NOT_HONOUR), f"round {n}"
        assert replay_reply == purchase_reply, f"round {n}: the replay was answered apart"
        # Either way the wallet is where it was: reversed, or never debited.
        assert _wallet_sen(world, card.pan) == before, f"round {n}"
        stan = decode_unit(unit).message.text(11)
        record = _purchase_record(world, edc.config.tid, stan)
        assert record.rc == rc
        assert record.reversed is (rc == codes.APPROVED) and record.debited is record.reversed
        # Both answers are remembered: replayed alike by every process, at once.
        assert switches.at_once([(p, unit) for p in range(PROCESSES)]) == \
            [purchase_reply] * PROCESSES
        assert switches.at_once([(p, reversal) for p in range(PROCESSES)]) == \
            [reversal_reply] * PROCESSES
    assert _wallet_sen(world, card.pan) == PERIOD_SEN
    print(f"original approved then reversed (00) / declined (05): {dict(outcomes)}")


# -- 3. one wallet, several cards, at once ------------------------------------------------


def test_one_wallet_on_several_cards_at_once(switches: Switches) -> None:
    """Round by round a fresh family: two cards (the first used twice) each spending
    65 % of the wallet, so one is approved; or three cards each spending 38 %, so two
    are.  Each purchase at its own terminal, on its own process."""
    world = switches.world
    stale_de54: list[tuple[int, list[int], int]] = []
    for r in range(6):
        first = world.card(index=2 + r)
        second = _issue_card(world, first, 2 * r)
        if r % 2 == 0:
            line, plan, fits = BIG, [(first, 0), (second, 1), (first, 2)], 1
        else:
            third = _issue_card(world, first, 2 * r + 1)
            line, plan, fits = THIRD, [(first, 0), (second, 1), (third, 2)], 2
        assert _wallet_sen(world, first.pan) == PERIOD_SEN
        units = [switches.edc(terminal, card).prepare_purchase([line], card.pin)
                 for card, terminal in plan]
        sends = [((i + r) % PROCESSES, unit) for i, unit in enumerate(units)]
        answers = switches.at_once(sends)
        rcs = [_rc(answer) for answer in answers]
        assert rcs.count(codes.APPROVED) == fits, f"round {r}: {rcs}"
        # a card used twice: the later ATC may be decided first (the earlier is 63)
        refusals = {codes.INSUFFICIENT_BALANCE} | (
            {codes.SECURITY_VIOLATION} if fits == 1 else set())
        assert set(rcs) - {codes.APPROVED} <= refusals, f"round {r}: {rcs}"
        after = _wallet_sen(world, first.pan)
        assert after == PERIOD_SEN - fits * line.total_sen >= 0, f"round {r}"
        assert {_wallet_sen(world, card.pan) for card, _ in plan} == {after}
        assert _transfers_from_wallet(world, first.pan) == fits
        # DE 54 (what is left): never below zero, a 51's below the amount
        for rc, answer in zip(rcs, answers, strict=True):
            left = _de54(answer)
            if rc == codes.INSUFFICIENT_BALANCE:
                assert left is not None and 0 <= left < line.total_sen, f"round {r}"
            elif rc == codes.APPROVED:
                assert left is not None and left >= 0
        shown = sorted(_de54(a) or 0 for a, rc in zip(answers, rcs, strict=True)
                       if rc == codes.APPROVED)
        if shown != sorted(PERIOD_SEN - k * line.total_sen for k in range(1, fits + 1)):
            stale_de54.append((r, shown, after))
        # And each answer is the one every process replays.
        replays = [((i + r + 1) % PROCESSES, unit) for i, unit in enumerate(units)]
        assert switches.at_once(replays) == answers, f"round {r}"
    # The wallet is locked by each batch's read: two processes approving at once take
    # turns, so each shows what the other left.
    assert not stale_de54, ("approvals that showed a balance another approval had spent "
                            f"(round, DE 54 shown, wallet after): {stale_de54}")


# -- 4. a random mix ----------------------------------------------------------------------

RANDOM_OPERATIONS = 150
RANDOM_BUDGET_S = 45.0
BASKETS: list[list[BasketLine]] = [
    [TEMPE],
    [BasketLine("TLR010", 1, 2_800_000)],
    [BasketLine("BRS005", 1, 6_500_000)],
    [BasketLine("AYM010", 1, 3_800_000), BasketLine("SYR001", 2, 300_000)],
    [BasketLine("BRS010", 1, 14_000_000)],
]
#: Answers a purchase may get here (63: a later ATC of its card was decided first;
#: 05: its reversal was).
PURCHASE_ANSWERS = {codes.APPROVED, codes.INSUFFICIENT_BALANCE, codes.DO_NOT_HONOUR,
                    codes.SECURITY_VIOLATION}


@dataclass
class Purchase:
    """A purchase unit and everything answered to it, and to its reversal."""

    unit: bytes
    tid: str
    stan: str
    family: int
    amount_sen: int
    answers: list[bytes] = field(default_factory=list)
    reversal: bytes | None = None
    reversal_answers: list[bytes] = field(default_factory=list)
    #: whether its reversal went out in the same wave (so a 05 is possible)
    raced: bool = False

    @property
    def rc(self) -> str:
        return _rc(self.answers[0])

    @property
    def reversed(self) -> bool:
        return bool(self.reversal_answers)

    @property
    def spent_sen(self) -> int:
        """What it takes from the wallet for good."""
        return self.amount_sen if self.rc == codes.APPROVED and not self.reversed else 0


def test_random_mix_on_three_processes(switches: Switches) -> None:
    seed = int(os.environ.get("BPNT_RACE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"BPNT_RACE_SEED={seed}")
    try:
        _random_mix(switches, random.Random(seed))
    except AssertionError as exc:
        exc.add_note(f"rerun with BPNT_RACE_SEED={seed}")
        raise


def _random_mix(switches: Switches, rng: random.Random) -> None:
    world = switches.world
    # Eight families; the first has three cards, the next three two (shared wallets).
    families = [[world.card(index=n)] for n in range(8)]
    for f, extra in enumerate((2, 1, 1, 1)):
        families[f] += [_issue_card(world, families[f][0], 50 + 2 * f + n)
                        for n in range(extra)]
    cards = [(f, card) for f, family in enumerate(families) for card in family]
    shared = [f for f, family in enumerate(families) if len(family) > 1]
    for t in range(TERMINALS):
        switches.edc(t, cards[0][1])
    purchases: list[Purchase] = []
    balances: list[bytes] = []
    done, waves, kinds = 0, 0, Counter[str]()
    deadline = time.monotonic() + RANDOM_BUDGET_S

    def new_purchase(card: DemoCard | None = None, terminal: int | None = None,
                     basket: list[BasketLine] | None = None) -> Purchase:
        if card is None:
            _, card = rng.choice(cards)
        if terminal is None:
            terminal = rng.randrange(TERMINALS)
        if basket is None:
            basket = rng.choice(BASKETS)
        family = next(f for f, c in cards if c == card)
        edc = switches.edc(terminal, card)
        unit = edc.prepare_purchase(basket, card.pin)
        purchase = Purchase(unit, edc.config.tid, decode_unit(unit).message.text(11), family,
                            sum(line.total_sen for line in basket))
        purchase.reversal = _reversal_of(edc, unit)
        purchases.append(purchase)
        return purchase

    while done < RANDOM_OPERATIONS and time.monotonic() < deadline:
        size = rng.randint(3, 6)
        wave: list[tuple[int, bytes, list[bytes]]] = []
        answered = [p for p in purchases if p.answers and not p.reversed]
        while len(wave) < size:
            kind = rng.choices(["purchase", "twice", "racing", "late", "balance", "family"],
                               [4, 2, 2, 2 if answered else 0, 1, 3])[0]
            kinds[kind] += 1
            processes = rng.sample(range(PROCESSES), PROCESSES)
            if kind == "family":  # cards of one wallet at once, at other terminals,
                f = rng.choice(shared)  # each for 60 % (or 40 %) of what it holds
                left = PERIOD_SEN - sum(p.spent_sen for p in purchases
                                        if p.family == f and p.answers)
                share = rng.choice((0.6, 0.4))
                basket = [BasketLine(TEMPE.item_code, int(left * share) // TEMPE.total_sen + 1,
                                     TEMPE.unit_price_sen)]
                chosen = rng.sample(families[f], rng.randint(2, len(families[f])))
                terminals = rng.sample(range(TERMINALS), len(chosen))
                for card, terminal, process in zip(chosen, terminals, processes, strict=False):
                    purchase = new_purchase(card, terminal, basket)
                    wave.append((process, purchase.unit, purchase.answers))
            elif kind == "late":
                original = answered.pop(rng.randrange(len(answered)))
                assert original.reversal is not None
                wave.append((processes[0], original.reversal, original.reversal_answers))
                if rng.random() < 0.3:  # and a repeat of it, elsewhere
                    wave.append((processes[1], original.reversal, original.reversal_answers))
            elif kind == "balance":
                _, card = rng.choice(cards)
                edc = switches.edc(rng.randrange(TERMINALS), card)
                wave.append((processes[0], _prepare_balance(edc, card.pin), balances))
            else:
                purchase = new_purchase()
                wave.append((processes[0], purchase.unit, purchase.answers))
                if kind == "twice":
                    wave.append((processes[1], purchase.unit, purchase.answers))
                elif kind == "racing":
                    assert purchase.reversal is not None
                    purchase.raced = True
                    wave.append((processes[1], purchase.reversal, purchase.reversal_answers))
                    if rng.random() < 0.5:  # and a replay of the original, on the third
                        wave.append((processes[2], purchase.unit, purchase.answers))
            done += 1
        rng.shuffle(wave)
        replies = switches.at_once([(process, unit) for process, unit, _ in wave])
        for (_, _, sink), reply in zip(wave, replies, strict=True):
            sink.append(reply)
        waves += 1
        assert _lowest_wallet_sen(world) >= 0, f"wave {waves}"

    print(f"{done} operations in {waves} waves: {dict(kinds)}")
    assert done >= RANDOM_OPERATIONS // 2, "too slow: fewer than half the operations ran"

    # What each terminal was answered: identical units, identical answers.
    outcomes: Counter[str] = Counter()
    for p in purchases:
        where = f"{p.tid} stan {p.stan}"
        assert p.answers and len(set(p.answers)) == 1, \
            f"{where}: one unit answered apart: {[_rc(a) for a in p.answers]}"
        assert p.rc in PURCHASE_ANSWERS, f"{where}: rc {p.rc}"
        assert p.rc != codes.DO_NOT_HONOUR or p.raced, f"{where}: 05 with no reversal racing"
        assert len(set(p.reversal_answers)) <= 1, \
            f"{where}: its reversal answered apart: {[_rc(a) for a in p.reversal_answers]}"
        assert all(_rc(a) == codes.APPROVED for a in p.reversal_answers), where
        outcomes[f"{p.rc}{' reversed' if p.reversed else ''}"] += 1
    print(f"purchases: {dict(outcomes)}")
    # (63: a later ATC of the card was decided first)
    balance_rcs = Counter(_rc(a) for a in balances)
    print(f"balance inquiries: {dict(balance_rcs)}")
    assert set(balance_rcs) <= {codes.APPROVED, codes.SECURITY_VIOLATION}, balance_rcs
    assert all((_de54(a) or 0) >= 0 for a in balances)

    # The ledger agrees: one transfer per purchase approved, undone when reversed.
    for p in purchases:
        record = _purchase_record(world, p.tid, p.stan)
        where = f"{p.tid} stan {p.stan}: answered {p.rc}, reversed {p.reversed}; {record}"
        assert record.rc == p.rc, where
        assert record.debited is (p.rc == codes.APPROVED), where
        assert record.amount_sen == (p.amount_sen if record.debited else None), where
        assert record.reversed is (p.rc == codes.APPROVED and p.reversed), where
    approved = [p for p in purchases if p.rc == codes.APPROVED]
    assert _transfer_count(world, "purchase") == len(approved)
    assert _transfer_count(world, "reversal") == sum(p.reversed for p in approved)
    for f, family in enumerate(families):
        spent = sum(p.spent_sen for p in purchases if p.family == f)
        assert _wallet_sen(world, family[0].pan) == PERIOD_SEN - spent >= 0, f"family {f}"

    # Later, any process replays every answer as it was given.
    sends = ([(rng.randrange(PROCESSES), p.unit, p.answers[0]) for p in purchases]
             + [(rng.randrange(PROCESSES), p.reversal, p.reversal_answers[0])
                for p in purchases if p.reversed and p.reversal is not None])
    for start in range(0, len(sends), 6):
        chunk = sends[start:start + 6]
        assert switches.at_once([(process, unit) for process, unit, _ in chunk]) == \
            [answer for _, _, answer in chunk]
    with world.db.transaction() as session:
        report = verify(session, world.keys.audit_key)
    assert report.ok, report


# -- helpers ------------------------------------------------------------------------------


def _rc(reply: bytes) -> str:
    return decode_unit(reply).message.opt_text(39) or "none"


def _de54(reply: bytes) -> int | None:
    message = decode_unit(reply).message
    return decode_balance(message.text(54)) if message.has(54) else None


def _reversal_of(edc: Edc, unit: bytes) -> bytes:
    """The 0400 an EDC sends for ``unit`` (no PIN block, MAC'd afresh)."""
    request = decode_unit(unit).message
    return edc.encode_unit(Message("0400", {
        k: v for k, v in request.fields.items() if k not in (52, 64)}))


def _prepare_balance(edc: Edc, pin: str) -> bytes:
    """The signed unit of a balance inquiry, built as :meth:`Edc.balance_inquiry`
    builds it, not sent (the counterpart of :meth:`Edc.prepare_purchase`)."""
    card, de55 = edc._read_card(0, False)
    edc._move(State.PIN_ENTERED)
    request = edc._card_request("balance", card, de55, pin, None, 0)
    edc._finish(TxnResult("balance", None, "PREPARED"))
    return edc.encode_unit(request)


def _issue_card(world: SeededWorld, of: DemoCard, n: int) -> DemoCard:
    """Another active card of the KPM holding ``of`` (so on the same wallet)."""
    card = DemoCard(pan=luhn_complete(f"6032989{n:08d}"), pin=f"{246810 + n:06d}")
    with world.db.transaction() as session:
        kpm = session.scalars(select(Kpm).join(Card, Card.kpm_id == Kpm.id).where(
            Card.pan_token == pan_token(world.keys.pan_token_key, of.pan))).one()
        Registry(session, world.keys, actor="test").issue_card(
            kpm=kpm, pan=card.pan, pin=card.pin, expiry_yymm=card.expiry_yymm)
    return card


def _wallet_id(world: SeededWorld, pan: str) -> int:
    with world.db.transaction() as session:
        wallet = session.scalar(
            select(Kpm.wallet_account_id).join(Card, Card.kpm_id == Kpm.id)
            .where(Card.pan_token == pan_token(world.keys.pan_token_key, pan)))
    assert wallet is not None
    return int(wallet)


def _wallet_sen(world: SeededWorld, pan: str) -> int:
    wallet = _wallet_id(world, pan)
    with world.db.transaction() as session:
        balance = session.scalar(select(Account.balance_sen).where(Account.id == wallet))
    assert balance is not None
    return int(balance)


def _lowest_wallet_sen(world: SeededWorld) -> int:
    with world.db.transaction() as session:
        lowest = session.scalar(select(func.min(Account.balance_sen))
                                .where(Account.id.in_(select(Kpm.wallet_account_id))))
    return int(lowest)


def _transfers_from_wallet(world: SeededWorld, pan: str) -> int:
    """Purchase transfers debiting the wallet of ``pan``."""
    wallet = _wallet_id(world, pan)
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer).where(
            Transfer.kind == "purchase", Transfer.debit_account_id == wallet)) or 0)


def _transfer_count(world: SeededWorld, kind: str) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer)
                                  .where(Transfer.kind == kind)) or 0)


@dataclass(frozen=True)
class _Record:
    rc: str
    debited: bool
    amount_sen: int | None
    reversed: bool


def _purchase_record(world: SeededWorld, tid: str, stan: str) -> _Record:
    """The stored answer of a purchase, its transfer, and whether one reverses it."""
    with world.db.transaction() as session:
        rows = session.execute(select(RequestRecord.response_code, RequestRecord.transfer_id)
                               .where(RequestRecord.tid == tid, RequestRecord.stan == stan,
                                      RequestRecord.kind == "request")).all()
        assert len(rows) == 1, f"{tid} stan {stan}: {len(rows)} records"
        rc, transfer_id = rows[0]
        amount = reversals = None
        if transfer_id is not None:
            amount = session.scalar(select(Transfer.amount_sen)
                                    .where(Transfer.id == transfer_id))
            reversals = session.scalar(select(func.count()).select_from(Transfer)
                                       .where(Transfer.reverses_transfer_id == transfer_id))
    return _Record(rc, transfer_id is not None, None if amount is None else int(amount),
                   bool(reversals))
