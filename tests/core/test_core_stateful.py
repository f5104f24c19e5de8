"""The decision core driven directly, without a database (issue 12).

A real EDC (real chip card with ARQC and ATC, PIN block under the TPK, MAC under the
TAK) talks to a link that hands each unit to ``switch.core.decide.decide`` over a
:class:`BatchFacts` built by hand, applies the decision's effects to the facts and
signs the answer.  Hypothesis's ``RuleBasedStateMachine`` runs purchases, balance
inquiries, wrong PINs, duplicates (same and different content), reversals before
and after their original, ATC replays, logons and allocations in any order, and a
model of the programme checks every answer and, after every step, the balances,
the PIN try counters, the money conservation and that no key ever moved money
twice.  Every decision is also checked to leave the facts it was given untouched.

HOST_SPEC 1.1 §4, the day's end, is in the same machine: voids by invoice (DE 62:
unknown, reversed, settled, another family's → 25, voided already → 12, another
amount → 13), reversals of voids (the debit reinstated, or the void standing when
the wallet no longer covers it) and of voided purchases (nothing paid back twice),
settlement 920000 with the model's totals (00, the batch closes, its number moves
on and wraps) or other totals (95, nothing closes), batch uploads 0320 (00, no
money) and 960000 (00, closes, with exactly the differences the model expects), and
repeats of each.  The terminal's open batch is an :class:`OpenBatch` the facts keep
from step to step, as the store would read it.  Every answer to a signed MTI carries
DE 37 and a DE 64 that verifies under the EDC's TAK (HOST_SPEC §3, §6).

The e-warong's shelf of tempe (docs/RULES.md, issue 14) is in it too: a stock row
drawn at the start (or none), deliveries between batches, a purchase the shelf cannot
cover is ST before the balance is looked at (51), an approved one takes its units, a
void and a reversal give them back, a reversal of a void takes them again or the void
stands; after every step the shelf is the model's, never negative, and conserved
(initial + received - the units of the standing purchases), and a ``low_stock`` alert
is raised exactly by the sales that cross the threshold.

The database state machine (tests/ledger/test_stateful.py) stays the integration
check of the same rules through the store.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import luhn_complete
from switch.clock import FixedClock
from switch.core.batch import VOID_CODE, OpenBatch, Totals
from switch.core.decide import answer_at_once, decide
from switch.core.effects import AlertRaise, Decision, Effect, SettlementWrite, StockMove
from switch.core.facts import (
    BatchFacts,
    Card,
    ItemFacts,
    StockLevel,
    Terminal,
    TerminalFacts,
)
from switch.core.replies import request_hash
from switch.core.request import Request
from switch.core.verify import Checks
from switch.ledger.money import Posting
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, decode_balance, decode_basket
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, classify
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security import mac
from switch.security.keyring import Keyring
from switch.security.pin import encrypt_pin_block, pin_offset
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink

KEYS = Keyring.from_settings(Settings())
TID, MID = "EDC00001", "EWARONG00000001"
TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PROGRAM, PAYABLE = 1, 900
START_SEN = 2_000_000
#: The programme account is held too (allocations debit it), so the sum of every
#: balance is a constant.
PROGRAM_START_SEN = 10**12
TEMPE = BasketLine("TMP001", 1, 500_000)
#: The terminal's e-warong, and its shelf of tempe in the facts.
EWARONG = 7
SHELF = (EWARONG, TEMPE.item_code)
#: Policy().low_stock_units: the threshold of a stock row that sets none.
DEFAULT_LOW_STOCK = 10
MAX_PIN_TRIES = 3
#: As switch.host.service hashes them (HOST_SPEC §4 content).
_GATED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.VOID, TxnType.REVERSAL,
                    TxnType.CASH_OUT, TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
#: HOST_SPEC §4: "A batch upload never moves money"; nor does a settlement.
_MOVES_NO_MONEY = frozenset({TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
PURCHASE_UPLOAD, VOID_UPLOAD = "000001", "020001"
UNKNOWN_INVOICE = "999999"  # the EDC's invoice counter never gets there in a run
INVENTED_RRN = 900_000_000_000  # above every record id the facts reserve
#: Right or wrong, shrinking to right (a wrong PIN first blocks cards early on).
RIGHT_PIN = st.sampled_from([True, False])


@dataclass
class CardModel:
    pan: str
    pin: str
    wallet: int
    kks: KksCard
    wrong_pins: int = 0
    blocked: bool = False


@dataclass(eq=False)
class Sent:
    """A purchase or void as the terminal sent it, what it was answered, and what the
    model says became of it."""

    request: Message
    response: Message
    #: The card presented.
    card: int
    #: The money it moved: a purchase's debit, an approved void's payback.
    debited_sen: int
    #: The model's batch (0, 1, ...: one per settlement) it was approved in.
    batch: int = 0
    #: A 0400 for it went out (later ones are repeats and replay its answer).
    reversal_sent: bool = False
    #: That reversal undid its money (a voided purchase's, or an uncovered void's, does not).
    reversed: bool = False
    #: A purchase: the void that stands against it.
    voided_by: Sent | None = None
    #: An approved void: the purchase it cancels.
    voids: Sent | None = None

    @property
    def units(self) -> int:
        """The tempe in its basket (a void carries its purchase's DE 48)."""
        return sum(line.quantity for line in decode_basket(self.request.text(48)))

    @property
    def is_void(self) -> bool:
        return self.request.text(3) == VOID_CODE

    @property
    def approved(self) -> bool:
        return self.response.opt_text(39) == codes.APPROVED

    @property
    def amount_sen(self) -> int:
        return int(self.request.text(4))

    @property
    def invoice(self) -> str:
        return self.request.text(62)

    @property
    def rrn(self) -> str:
        return self.response.text(37)

    def __repr__(self) -> str:
        return (f"<{'void' if self.is_void else 'purchase'} stan={self.request.text(11)} "
                f"invoice={self.invoice} rc={self.response.opt_text(39)}>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints draws with this: one line, not the messages' bytes."""
        printer.text(repr(self))


@dataclass(frozen=True)
class HeldUpload:
    """A 0320 the model sent for the open batch: the original's DE 3, DE 4, DE 62."""

    processing_code: str
    amount_sen: int
    invoice: str


@dataclass
class PureHost:
    """A host of one batch that never ends: decode, decide, apply, sign."""

    facts: BatchFacts
    keys_drawn: int = 0
    effects: list[Effect] = field(default_factory=list)
    last: Decision | None = None
    #: Called with each request, its answer and the answer's bytes (no TPDU).
    on_answer: Callable[[Message, Message, bytes], None] | None = None

    def exchange(self, unit: bytes) -> bytes | None:
        decoded = decode_unit(unit)
        message, txn = decoded.message, classify(decoded.message)
        tpdu = decoded.tpdu.reply().to_bytes()
        ready = answer_at_once(message, txn)
        decision = ready if ready is not None else self._decide(Request(
            message, unit[TPDU_LEN:], txn,
            request_hash(message, unit[TPDU_LEN:]) if txn in _GATED else "",
            self._new_keys() if txn is TxnType.LOGON else None))
        if decision.response is None:
            return None
        body = (mac.sign(decision.sign_with, decision.response) if decision.sign_with
                else decision.response)
        if self.on_answer is not None:
            self.on_answer(message, decode_unit(tpdu + body).message, body)
        return tpdu + body

    def _decide(self, request: Request) -> Decision:
        before = _snapshot(self.facts)
        decision = decide(request, self.facts)
        assert _snapshot(self.facts) == before, "a decider changed the facts it was given"
        balances = dict(self.facts.balances)
        self.facts.apply(decision.effects)
        if request.txn in _MOVES_NO_MONEY:
            assert not any(isinstance(e, Posting) for e in decision.effects), decision.effects
            assert self.facts.balances == balances, f"a {request.txn.value} moved money"
        self.effects.extend(decision.effects)
        self.last = decision
        return decision

    def _new_keys(self) -> tuple[bytes, bytes]:
        self.keys_drawn += 1
        return (bytes([self.keys_drawn, 1]) * 8, bytes([self.keys_drawn, 2]) * 8)

    def last_settlement(self) -> SettlementWrite:
        assert self.last is not None
        writes = [e for e in self.last.effects if isinstance(e, SettlementWrite)]
        assert len(writes) == 1, self.last.effects
        return writes[0]


def _snapshot(facts: BatchFacts) -> dict[str, Any]:
    """The facts as values; the reserved ids (thousands of ints) copied flat, which is
    all a deep copy would do to them, only faster."""
    return {f.name: (tuple(getattr(facts, f.name)) if f.name in ("record_ids", "transfer_ids")
                     else _deep_copy(getattr(facts, f.name)))
            for f in dataclasses.fields(facts) if f.name != "checks"}


def _deep_copy(value: Any) -> Any:
    """``copy.deepcopy``, but a dataclass is built again through its constructor: the
    compiled build (switch/native.py) keeps a frozen dataclass's fields out of reach of
    the setattr that deepcopy restores them with."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)(**{f.name: _deep_copy(getattr(value, f.name))
                              for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return type(value)({_deep_copy(k): _deep_copy(v) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(_deep_copy(v) for v in value))
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_deep_copy(v) for v in value)
    return copy.deepcopy(value)


def _cards() -> list[CardModel]:
    """Two families: the first holds two cards on one wallet."""
    out = []
    for n, (pin, wallet) in enumerate((("123456", 101), ("246810", 101), ("135790", 102))):
        pan = luhn_complete(f"60329800000{n:04d}")
        out.append(CardModel(pan, pin, wallet, KksCard(
            profile_for(pan, "00", "2812", KEYS.imk_ac))))
    return out


def _next_batch_number(number: str) -> str:
    """HOST_SPEC §4: batch number + 1, 999999 → 000001."""
    return f"{int(number) % 999_999 + 1:06d}"


class CoreMachine(RuleBasedStateMachine):
    @initialize(first_batch=st.sampled_from(["000001", "999998", "999999"]),
                opening=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), max_size=3),
                shelf=st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 15))),
                stock_row=st.sampled_from([True, True, True, False]))
    def start(self, first_batch: str, opening: list[tuple[int, int]],
              shelf: tuple[int, int | None], stock_row: bool) -> None:
        """The terminal logged on, its batch numbered ``first_batch`` (the two last ones
        wrap), its e-warong's shelf (``shelf``: units and the row's own low-stock
        threshold, ``None``: the policy's; no ``stock_row``: none at all), and the day's
        first sales (``opening``: card, tempe; right PINs) made."""
        units, own_threshold = shelf if stock_row else (0, None)
        self.initial_units = self.units = units
        self.threshold = DEFAULT_LOW_STOCK if own_threshold is None else own_threshold
        self.received = 0
        #: (record id, units left, threshold) of every low-stock alert the model expects.
        self.low_stock: list[tuple[int, int, int]] = []
        self.cards = _cards()
        self.balances = {101: START_SEN, 102: START_SEN, PAYABLE: 0,
                         PROGRAM: PROGRAM_START_SEN}
        self.total_sen = sum(self.balances.values())
        facts = BatchFacts(
            now=FixedClock().now(), checks=Checks(KEYS), max_pin_tries=MAX_PIN_TRIES,
            terminals={TID: Terminal(TerminalFacts(TID, True, MID, True, None, None),
                                     PAYABLE, TMK, EWARONG)},
            cards={c.pan: Card(n + 1, c.pan[:6] + "******" + c.pan[-4:], "00", "2812",
                               pin_offset(KEYS.pvk, c.pin, c.pan), True, c.wallet, "active",
                               0, None, None) for n, c in enumerate(self.cards)},
            balances=dict(self.balances),
            catalogue={"TMP001": ItemFacts("TMP001", "protein", True)},
            open_batches={TID: OpenBatch(TID, first_batch)},
            stock={SHELF: StockLevel(units, own_threshold)} if stock_row else {},
            record_ids=list(range(1, 5_000)), transfer_ids=list(range(1, 5_000)))
        self.host = PureHost(facts, on_answer=self._check_answer)
        self.reader = EmulatedReader()
        self.edc = Edc(EdcConfig(TID, MID, TMK), DirectLink(self.host.exchange), self.reader,
                       clock=FixedClock())
        assert self.edc.logon().approved
        self.sent: list[Sent] = []
        # The terminal's batch as the model sees it.
        self.batch_index = 0
        self.batch_number = first_batch
        self.uploads: dict[str, HeldUpload] = {}  # by DE 37, of the open batch
        self.invented = 0
        #: (DE 60, the model's totals) of every batch a settlement closed.
        self.closed: list[tuple[str, Totals]] = []
        #: Settlements and uploads sent, with their answers (for repeats).
        self.day_end: list[tuple[Message, Message]] = []
        for card, tempe in opening:
            self.purchase(card, tempe, True)

    # -- rules -------------------------------------------------------------------------

    @rule(card=st.integers(0, 2), tempe=st.integers(1, 4), right_pin=RIGHT_PIN)
    def purchase(self, card: int, tempe: int, right_pin: bool) -> None:
        model = self.cards[card]
        self.reader.swap(model.kks)
        basket = [BasketLine(TEMPE.item_code, tempe, TEMPE.unit_price_sen)]
        amount_sen = tempe * TEMPE.unit_price_sen
        unit = self.edc.prepare_purchase(basket, model.pin if right_pin else "000000")
        response = self._exchange(unit)
        expected = self._expect_card_request(model, right_pin, amount_sen, tempe)
        assert response.opt_text(39) == expected, (response.opt_text(39), expected)
        debited = amount_sen if expected == codes.APPROVED else 0
        moved = [e for e in self._last_effects() if isinstance(e, Posting | StockMove)]
        if expected == codes.APPROVED:
            assert isinstance(moved[0], Posting) and moved[0].amount_sen == amount_sen
            assert moved[1:] == [StockMove(EWARONG, TEMPE.item_code, -tempe)], moved
            if self.units >= self.threshold > self.units - tempe:
                event("purchase: low stock")
                self.low_stock.append((int(response.text(37)), self.units - tempe,
                                       self.threshold))
            self.units -= tempe
        else:
            assert moved == [], moved  # ST, 51, a PIN refusal: no money, no goods
        event(f"purchase: rc {expected}")
        self.balances[model.wallet] -= debited
        self.balances[PAYABLE] += debited
        if expected in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
            assert decode_balance(response.text(54)) == self.balances[model.wallet]
        self.sent.append(Sent(decode_unit(unit).message, response, card, debited,
                              self.batch_index))

    @rule(card=st.integers(0, 2), right_pin=RIGHT_PIN)
    def balance_inquiry(self, card: int, right_pin: bool) -> None:
        model = self.cards[card]
        self.reader.swap(model.kks)
        result = self.edc.balance_inquiry(model.pin if right_pin else "000000")
        assert result.rc == self._expect_card_request(model, right_pin, 0)
        if result.rc == codes.APPROVED:
            assert result.balance_sen == self.balances[model.wallet]

    @precondition(lambda self: any(not s.is_void for s in self.sent))
    @rule(data=st.data(), held=st.sampled_from([True, True, False]),
          card=st.sampled_from([None, None, 0, 1, 2]),
          right_pin=st.sampled_from([True, True, True, False]),
          unknown_invoice=st.sampled_from([False] * 5 + [True]),
          amount_delta=st.sampled_from([0, 0, 0, 1, -1]))
    def void(self, data: st.DataObject, held: bool, card: int | None, right_pin: bool,
             unknown_invoice: bool, amount_delta: int) -> None:
        """0200/020000 naming a purchase by DE 62, presented by its card (``None``) or
        another; the model says 00, 25, 12, 13 or a card refusal (HOST_SPEC §4, Void).
        ``held``: a purchase of the open batch (when there is one), else any sent."""
        purchases = [s for s in self.sent if not s.is_void]
        in_batch = [s for s in self._batch() if not s.is_void]
        target = data.draw(st.sampled_from((in_batch if held and in_batch else purchases)[::-1]),
                           label="purchase")
        self._void(target, target.card if card is None else card, right_pin, unknown_invoice,
                   amount_delta)

    def _void(self, target: Sent, presenter: int, right_pin: bool, unknown_invoice: bool,
              amount_delta: int) -> Sent:
        model = self.cards[presenter]
        tpk = self.edc._tpk  # the terminal's: the PIN is entered again under it
        assert tpk is not None
        fields = {de: v for de, v in target.request.fields.items() if de not in (23, 55, 64)}
        if presenter != target.card:
            fields[35] = model.kks.profile.track2
        fields.update({
            3: VOID_CODE, 11: self.edc._next_stan(), 22: "021",
            4: f"{target.amount_sen + amount_delta:012d}",
            52: encrypt_pin_block(tpk, model.pin if right_pin else "000000", model.pan)})
        if unknown_invoice:
            fields[62] = UNKNOWN_INVOICE
        request = Message("0200", fields)
        response = self._exchange(self.edc.encode_unit(request))
        expected, original = self._expect_void(model, right_pin, request)
        event(f"void: rc {expected}")
        assert response.opt_text(39) == expected, (response.opt_text(39), expected)
        void = Sent(request, response, presenter, 0, self.batch_index)
        if original is not None:
            void.debited_sen, void.voids, original.voided_by = original.amount_sen, original, void
            self.balances[model.wallet] += original.amount_sen
            self.balances[PAYABLE] -= original.amount_sen
            self.units += original.units
            assert decode_balance(response.text(54)) == self.balances[model.wallet]
            assert response.has(38)
        self.sent.append(void)
        return void

    @precondition(lambda self: any(s.is_void and s.approved and not s.reversal_sent
                                   for s in self.sent))
    @rule(data=st.data())
    def reverse_void_after_spending(self, data: st.DataObject) -> None:
        """Cover: the wallet spent below an approved void's amount (its card buys all the
        tempe it can), then the void reversed: 00, and (the card not blocked) nothing
        moves and the void stands."""
        void = data.draw(st.sampled_from([s for s in self.sent if s.is_void and s.approved
                                          and not s.reversal_sent]))
        tempe = self.balances[self.cards[void.card].wallet] // TEMPE.unit_price_sen
        if tempe:
            self.purchase(void.card, tempe, True)
        self._reverse(void, 0)

    @rule(card=st.integers(0, 2), tempe=st.integers(1, 4))
    def reverse_void_after_selling_out(self, card: int, tempe: int) -> None:
        """Cover: ``card`` buys ``tempe`` (delivered first if the shelf is short, its
        wallet topped up if it is) and voids it, another family's card (topped up) buys
        the whole shelf, and the void is reversed: 00, and the void stands, money and
        goods, because the shelf no longer holds its tempe (docs/RULES.md).  A blocked
        card on the way just gets its refusals."""
        model = self.cards[card]
        if self.units < tempe:
            self.receive_stock(tempe - self.units)
        if self.balances[model.wallet] < tempe * TEMPE.unit_price_sen:
            self.allocate(model.wallet, tempe * TEMPE.unit_price_sen)
        self.purchase(card, tempe, True)
        bought = self.sent[-1]
        if not bought.approved:
            return
        void = self._void(bought, card, True, False, 0)
        buyers = [n for n, c in enumerate(self.cards) if c.wallet != model.wallet
                  and not c.blocked]
        if buyers and void.approved:
            buyer = self.cards[buyers[0]]
            self.allocate(buyer.wallet, self.units * TEMPE.unit_price_sen)
            self.purchase(buyers[0], self.units, True)
            self._reverse(void, 0)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same request again: the stored answer (MAC aside), nothing moves."""
        original = data.draw(st.sampled_from(self.sent))
        again = self._exchange(self.edc.encode_unit(original.request))
        assert _without_mac(again) == _without_mac(original.response)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def duplicate_with_other_content(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(self.sent))
        changed = original.request.with_fields(de12="235959")
        assert self._exchange(self.edc.encode_unit(changed)).opt_text(39) == \
            codes.DUPLICATE_DIFFERENT

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), repeats=st.integers(0, 2))
    def reverse(self, data: st.DataObject, repeats: int) -> None:
        """A reversal (0400, then ``repeats`` 0401s) of a purchase or a void: answered 00,
        and it undoes the original's money at most once (see :meth:`_reversed`)."""
        self._reverse(data.draw(st.sampled_from(self.sent[::-1])), repeats)  # latest first

    @rule(card=st.integers(0, 2))
    def reversal_before_its_original(self, card: int) -> None:
        """The original, arriving after its reversal, is 05 and moves nothing."""
        model = self.cards[card]
        self.reader.swap(model.kks)
        unit = self.edc.prepare_purchase([TEMPE], model.pin)
        request = decode_unit(unit).message
        assert self._exchange(self._reversal_of(request, "0400")).opt_text(39) == \
            codes.APPROVED
        assert self._exchange(unit).opt_text(39) == codes.DO_NOT_HONOUR

    @precondition(lambda self: any(not s.is_void for s in self.sent))
    @rule(data=st.data())
    def atc_replay(self, data: st.DataObject) -> None:
        """An old cryptogram under a new STAN: its ATC is not above the last one (63),
        unless the card is blocked (62, checked first).  A void carries no ARQC."""
        original = data.draw(st.sampled_from([s for s in self.sent if not s.is_void]))
        replayed = original.request.with_fields(de11=self.edc._next_stan())
        expected = (codes.RESTRICTED_CARD if self.cards[original.card].blocked
                    else codes.SECURITY_VIOLATION)
        assert self._exchange(self.edc.encode_unit(replayed)).opt_text(39) == expected

    @rule()
    def logon(self) -> None:
        """New working keys; every later request is checked under them."""
        assert self.edc.logon().approved

    @rule(wallet=st.sampled_from([101, 102]), amount_sen=st.integers(1, 3_000_000))
    def allocate(self, wallet: int, amount_sen: int) -> None:
        facts = self.host.facts
        transfer_id = facts.next_transfer_id()
        posting = Posting(transfer_id, f"alloc:{transfer_id}:{wallet}", "allocation", PROGRAM,
                          wallet, amount_sen, "BPNT")
        facts.apply([posting])
        self.host.effects.append(posting)
        self.balances[wallet] += amount_sen
        self.balances[PROGRAM] -= amount_sen

    @rule(units=st.integers(1, 20))
    def receive_stock(self, units: int) -> None:
        """A delivery between batches, as the store would add it: the shelf refills."""
        facts = self.host.facts
        level = facts.stock.get(SHELF, StockLevel(0))
        facts.stock[SHELF] = StockLevel(level.units + units, level.low_threshold)
        self.units += units
        self.received += units

    @rule(wrong=st.sampled_from([None, None, 0, 1, 2, 3]), delta=st.integers(1, 2))
    def settle(self, wrong: int | None, delta: int) -> None:
        """0500/920000 with the model's totals (00: the batch closes) or with one of
        them off by ``delta`` (95: nothing closes, HOST_SPEC §4)."""
        totals = self._totals()
        sent = totals if wrong is None else Totals(
            *(v + delta if n == wrong else v for n, v in enumerate(totals)))
        response = self._settle("920000", sent)
        write = self.host.last_settlement()
        assert write.switch_totals == totals, (write.switch_totals, totals)
        if wrong is None:
            assert response.opt_text(39) == codes.APPROVED
            self._close(totals)
        else:
            assert response.opt_text(39) == codes.SETTLEMENT_MISMATCH
            assert not write.closed and write.next_batch_number is None

    @rule(data=st.data(), change=st.sampled_from(["as held", "as held", "amount", "invented"]),
          delta=st.sampled_from([1, -1, 500_000]))
    def batch_upload(self, data: st.DataObject, change: str, delta: int) -> None:
        """0320 for a transaction the terminal holds (as held, or with another DE 4) or
        for one it invented: 00, and no money moves (checked in :class:`PureHost`)."""
        held = [s for s in self._standing() if s.rrn not in self.uploads]
        if change == "invented" or not held:
            self.invented += 1
            now = self.edc.clock.now()
            rrn, code, amount_sen, invoice = (f"{INVENTED_RRN + self.invented:012d}",
                                              PURCHASE_UPLOAD, TEMPE.total_sen, "777777")
            local_time, local_date, approval = now.strftime("%H%M%S"), now.strftime("%m%d"), \
                "999999"
        else:
            original = data.draw(st.sampled_from(held), label="held")
            rrn, invoice = original.rrn, original.invoice
            code = VOID_UPLOAD if original.is_void else PURCHASE_UPLOAD
            amount_sen = original.amount_sen + (delta if change == "amount" else 0)
            local_time, local_date = original.request.text(12), original.request.text(13)
            approval = original.response.text(38)
        request = Message("0320", {
            3: code, 4: f"{amount_sen:012d}", 11: self.edc._next_stan(), 12: local_time,
            13: local_date, 24: "001", 37: rrn, 38: approval, 41: TID, 42: MID,
            60: self.batch_number, 62: invoice})
        response = self._exchange(self.edc.encode_unit(request))
        assert response.opt_text(39) == codes.APPROVED
        self.day_end.append((request, response))
        self.uploads[rrn] = HeldUpload(code[:5] + "0", amount_sen, invoice)

    @precondition(lambda self: bool(self.uploads))
    @rule()
    def settle_after_upload(self) -> None:
        """0500/960000: 00, the batch closes, and the differences are exactly the
        model's: on the switch only (not uploaded), another amount, on the terminal
        only (an RRN the switch's batch does not hold standing)."""
        totals = self._totals()
        expected = self._differences()
        event(f"960000: {sorted(Counter(d[0] for d in expected).items())}")
        response = self._settle("960000", totals)
        assert response.opt_text(39) == codes.APPROVED
        write = self.host.last_settlement()
        got = Counter((d.kind, d.processing_code, d.rrn, d.invoice, d.switch_amount_sen,
                       d.terminal_amount_sen) for d in write.differences)
        assert got == Counter(expected), (got, expected)
        self._close(totals)

    @precondition(lambda self: bool(self.day_end))
    @rule(data=st.data())
    def repeat_day_end(self, data: st.DataObject) -> None:
        """A settlement or upload again: its stored answer; nothing closes or is added."""
        request, response = data.draw(st.sampled_from(self.day_end))
        again = self._exchange(self.edc.encode_unit(request))
        assert _without_mac(again) == _without_mac(response)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        if hasattr(self, "host"):
            assert self.host.facts.balances == self.balances

    @invariant()
    def money_is_conserved(self) -> None:
        if hasattr(self, "host"):
            assert sum(self.host.facts.balances.values()) == self.total_sen
            assert all(b >= 0 for b in self.host.facts.balances.values())

    @invariant()
    def pin_tries_match_the_model(self) -> None:
        if not hasattr(self, "host"):
            return
        for model in self.cards:
            card = self.host.facts.cards[model.pan]
            assert (card.wrong_pin_count, card.status) == (
                model.wrong_pins, "blocked" if model.blocked else "active")

    @invariant()
    def shelf_matches_the_model_and_is_conserved(self) -> None:
        """The facts' stock is the model's, never negative, and every unit is accounted
        for: initial + received - the tempe of the standing purchases (approved, their
        money not undone by a reversal, no void standing against them)."""
        if not hasattr(self, "host"):
            return
        stock = self.host.facts.stock
        assert set(stock) <= {SHELF}, stock
        units = stock.get(SHELF, StockLevel(0)).units
        assert units == self.units >= 0, (units, self.units)
        sold = sum(s.units for s in self.sent if not s.is_void and s.approved
                   and not s.reversed and s.voided_by is None)
        assert units == self.initial_units + self.received - sold

    @invariant()
    def low_stock_alerts_exactly_at_the_crossings(self) -> None:
        """A ``low_stock`` alert for each sale that took the shelf from at least its
        threshold to below it, and no other alert (no hours, no zones, no prices and
        three cards: no other rule can hit)."""
        if not hasattr(self, "host"):
            return
        alerts = [e for e in self.host.effects if isinstance(e, AlertRaise)]
        assert all(a.rule == "low_stock" and a.action == "flag" and a.tid == TID
                   and a.ewarong_id == EWARONG and a.detail["item"] == TEMPE.item_code
                   for a in alerts), alerts
        got = [(a.record_id, a.detail["quantity"], a.detail["threshold"]) for a in alerts]
        assert got == self.low_stock, (got, self.low_stock)

    @invariant()
    def no_key_moves_money_twice(self) -> None:
        if not hasattr(self, "host"):
            return
        postings = [e for e in self.host.effects if isinstance(e, Posting)]
        keys = [p.idempotency_key for p in postings]
        assert len(keys) == len(set(keys))
        reversed_ids = [p.reverses_transfer_id for p in postings if p.kind == "reversal"]
        assert len(reversed_ids) == len(set(reversed_ids))

    @invariant()
    def open_batch_matches_the_model(self) -> None:
        if not hasattr(self, "host"):
            return
        batch = self.host.facts.open_batch(TID)
        assert batch.batch_number == self.batch_number
        assert set(batch.entries) == {int(s.rrn) for s in self._batch()}
        assert batch.totals() == self._totals(), (batch.totals(), self._totals())
        assert {u.rrn for u in batch.uploads} == set(self.uploads)

    @invariant()
    def closed_batches_settled_the_model_totals(self) -> None:
        if not hasattr(self, "host"):
            return
        settled = [(w.batch_number, w.switch_totals) for w in self.host.effects
                   if isinstance(w, SettlementWrite) and w.closed]
        assert settled == self.closed

    # -- the model ---------------------------------------------------------------------

    def _batch(self) -> list[Sent]:
        """The open batch: approved purchases and voids since the last settlement."""
        return [s for s in self.sent if s.approved and s.batch == self.batch_index]

    def _standing(self) -> list[Sent]:
        return [s for s in self._batch() if not s.reversed]

    def _totals(self) -> Totals:
        """HOST_SPEC §4 DE 63: purchase count and amount = approved purchases of the open
        batch whose money no reversal undid (voided ones included); void count and
        amount = approved voids of the batch whose money no reversal undid (a void that
        stands because the wallet no longer covered its reversal is counted)."""
        purchases = [s.amount_sen for s in self._standing() if not s.is_void]
        voids = [s.amount_sen for s in self._standing() if s.is_void]
        return Totals(len(purchases), sum(purchases), len(voids), sum(voids))

    def _differences(self) -> list[tuple[str, str, str, str, int | None, int | None]]:
        """What 960000 must record: each standing transaction against the upload with
        its RRN; uploads left over are on the terminal only."""
        uploads = dict(self.uploads)
        out: list[tuple[str, str, str, str, int | None, int | None]] = []
        for s in self._standing():
            code = s.request.text(3)
            upload = uploads.pop(s.rrn, None)
            if upload is None:
                out.append(("switch_only", code, s.rrn, s.invoice, s.amount_sen, None))
            elif (upload.amount_sen, upload.processing_code) != (s.amount_sen, code):
                out.append(("amount", code, s.rrn, s.invoice, s.amount_sen, upload.amount_sen))
        out += [("terminal_only", u.processing_code, rrn, u.invoice, None, u.amount_sen)
                for rrn, u in uploads.items()]
        return out

    def _close(self, totals: Totals) -> None:
        """A settlement closed the open batch: check what it closed, start the next."""
        write = self.host.last_settlement()
        assert write.closed and write.batch_number == self.batch_number
        assert set(write.closed_record_ids) == {int(s.rrn) for s in self._batch()}
        assert write.next_batch_number == _next_batch_number(self.batch_number)
        event(f"closed batch {self.batch_number}")
        self.closed.append((self.batch_number, totals))
        self.batch_number = _next_batch_number(self.batch_number)
        self.batch_index += 1
        self.uploads = {}

    def _reversed(self, original: Sent) -> None:
        """The model of a first reversal (HOST_SPEC §4): a purchase's debit comes back,
        unless a void stands against it (the void paid it back: nothing twice); a void's
        payback is taken again and the purchase is no longer voided, unless the wallet no
        longer covers it (the void stands).  Whatever was not approved moved nothing.
        The goods follow the money (docs/RULES.md): a reversed purchase's tempe goes
        back on the shelf, a reversed void's is taken again, and a void whose tempe the
        shelf no longer holds stands as well.

        As the switch does it (HOST_SPEC §4 does not say): a voided purchase's reversal
        leaves it standing in the batch (its void reversed later reinstates its debit),
        and a reversal whose original a settlement closed still restores the money."""
        if not original.approved:
            return
        wallet = self.cards[original.card].wallet
        if not original.is_void:
            if original.voided_by is not None:
                event("reversal of a voided purchase")
                return
            self.balances[wallet] += original.debited_sen
            self.balances[PAYABLE] -= original.debited_sen
            self.units += original.units  # the goods back on the shelf
        else:
            if self.balances[wallet] < original.debited_sen:
                event("reversal of a void: the void stands")
                return
            if self.units < original.units:
                event("reversal of a void: the void stands (shelf)")
                return
            event("reversal of a void: debit reinstated")
            assert original.voids is not None and original.voids.voided_by is original
            original.voids.voided_by = None
            self.balances[wallet] -= original.debited_sen
            self.balances[PAYABLE] += original.debited_sen
            self.units -= original.units  # the goods taken again
        original.reversed = True

    def _expect_void(self, model: CardModel, right_pin: bool,
                     request: Message) -> tuple[str, Sent | None]:
        """The answer to a void, and the purchase it cancels when approved."""
        rc = self._expect_card_request(model, right_pin, 0)
        if rc != codes.APPROVED:
            return rc, None
        found = [s for s in self._batch() if not s.is_void and s.invoice == request.text(62)]
        original = found[-1] if found else None
        if original is None or original.reversed:
            return codes.ORIGINAL_NOT_FOUND, None
        if self.cards[original.card].wallet != model.wallet:
            return codes.ORIGINAL_NOT_FOUND, None
        if original.voided_by is not None:
            return codes.INVALID_TRANSACTION, None
        if int(request.text(4)) != original.amount_sen:
            return codes.INVALID_AMOUNT, None
        return codes.APPROVED, original

    # -- helpers -----------------------------------------------------------------------

    def _exchange(self, unit: bytes) -> Message:
        answer = self.host.exchange(unit)
        assert answer is not None, "the core closed a connection"
        return decode_unit(answer).message

    def _check_answer(self, request: Message, response: Message, raw: bytes) -> None:
        """HOST_SPEC §3, §6: DE 37 on every answer to a signed MTI; DE 64 on all but 58
        and 63, verifying under the terminal's TAK wherever it is."""
        if request.mti not in mac.MAC_REQUESTS:
            return
        assert response.has(37), f"no DE 37 in the answer to {request.mti}"
        if response.opt_text(39) not in (codes.NOT_PERMITTED_TERMINAL,
                                         codes.SECURITY_VIOLATION):
            assert response.has(64), f"an unsigned {response.opt_text(39)}"
        if response.has(64):
            tak = self.edc._tak
            assert tak is not None and mac.verify(tak, raw), "a DE 64 that does not verify"

    def _last_effects(self) -> tuple[Effect, ...]:
        assert self.host.last is not None
        return self.host.last.effects

    def _settle(self, code: str, totals: Totals) -> Message:
        request = Message("0500", {3: code, 11: self.edc._next_stan(), 24: "001", 41: TID,
                                   42: MID, 60: self.batch_number, 63: totals.encode()})
        response = self._exchange(self.edc.encode_unit(request))
        self.day_end.append((request, response))
        return response

    def _reverse(self, original: Sent, repeats: int) -> None:
        for mti in ["0400"] + ["0401"] * repeats:
            answer = self._exchange(self._reversal_of(original.request, mti))
            assert answer.opt_text(39) == codes.APPROVED
        if not original.reversal_sent:
            original.reversal_sent = True
            self._reversed(original)

    def _reversal_of(self, request: Message, mti: str) -> bytes:
        fields = {k: v for k, v in request.fields.items() if k not in (52, 64)}
        return self.edc.encode_unit(Message(mti, fields))

    def _expect_card_request(self, model: CardModel, right_pin: bool, amount_sen: int,
                             tempe: int = 0) -> str:
        """The model's answer, and its PIN counter moved as the host must move it; a
        purchase of ``tempe`` the shelf cannot cover is ST, before the balance (51)."""
        if model.blocked:
            return codes.RESTRICTED_CARD
        if not right_pin:
            model.wrong_pins += 1
            if model.wrong_pins >= MAX_PIN_TRIES:
                model.blocked = True
                return codes.PIN_TRIES_EXCEEDED
            return codes.WRONG_PIN
        model.wrong_pins = 0
        if tempe > self.units:
            return codes.OUT_OF_STOCK
        if amount_sen > self.balances[model.wallet]:
            return codes.INSUFFICIENT_BALANCE
        return codes.APPROVED


def _without_mac(message: Message) -> bytes:
    return encode(Message(message.mti, {k: v for k, v in message.fields.items() if k != 64}))


CoreMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestCore = CoreMachine.TestCase
