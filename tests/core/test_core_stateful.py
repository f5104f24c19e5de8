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
The database state machine (tests/ledger/test_stateful.py) stays the integration
check of the same rules through the store.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import luhn_complete
from switch.clock import FixedClock
from switch.core.decide import answer_at_once, decide
from switch.core.effects import Decision, Effect
from switch.core.facts import BatchFacts, Card, ItemFacts, Terminal, TerminalFacts
from switch.core.replies import request_hash
from switch.core.request import Request
from switch.core.verify import Checks
from switch.ledger.money import Posting
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, decode_balance
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, classify
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security import mac
from switch.security.keyring import Keyring
from switch.security.pin import pin_offset
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink

KEYS = Keyring.from_settings(Settings())
TID, MID = "EDC00001", "EWARONG00000001"
TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PROGRAM, PAYABLE = 1, 900
START_SEN = 2_000_000
TEMPE = BasketLine("TMP001", 1, 500_000)
MAX_PIN_TRIES = 3
_GATED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.REVERSAL, TxnType.CASH_OUT})


@dataclass
class CardModel:
    pan: str
    pin: str
    wallet: int
    kks: KksCard
    wrong_pins: int = 0
    blocked: bool = False


@dataclass
class Sent:
    """A purchase as the terminal sent it and what it was answered."""

    request: Message
    response: Message
    card: int
    debited_sen: int
    reversed: bool = False


@dataclass
class PureHost:
    """A host of one batch that never ends: decode, decide, apply, sign."""

    facts: BatchFacts
    keys_drawn: int = 0
    effects: list[Effect] = field(default_factory=list)

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
        return tpdu + body

    def _decide(self, request: Request) -> Decision:
        before = _snapshot(self.facts)
        decision = decide(request, self.facts)
        assert _snapshot(self.facts) == before, "a decider changed the facts it was given"
        self.facts.apply(decision.effects)
        self.effects.extend(decision.effects)
        return decision

    def _new_keys(self) -> tuple[bytes, bytes]:
        self.keys_drawn += 1
        return (bytes([self.keys_drawn, 1]) * 8, bytes([self.keys_drawn, 2]) * 8)


def _snapshot(facts: BatchFacts) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in vars(facts).items() if k != "checks"})


def _cards() -> list[CardModel]:
    """Two families: the first holds two cards on one wallet."""
    out = []
    for n, (pin, wallet) in enumerate((("123456", 101), ("246810", 101), ("135790", 102))):
        pan = luhn_complete(f"60329800000{n:04d}")
        out.append(CardModel(pan, pin, wallet, KksCard(
            profile_for(pan, "00", "2812", KEYS.imk_ac))))
    return out


class CoreMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.cards = _cards()
        self.balances = {101: START_SEN, 102: START_SEN, PAYABLE: 0}
        self.allocated_sen = 0
        facts = BatchFacts(
            now=FixedClock().now(), checks=Checks(KEYS), max_pin_tries=MAX_PIN_TRIES,
            terminals={TID: Terminal(TerminalFacts(TID, True, MID, True, None, None),
                                     PAYABLE, TMK)},
            cards={c.pan: Card(n + 1, c.pan[:6] + "******" + c.pan[-4:], "00", "2812",
                               pin_offset(KEYS.pvk, c.pin, c.pan), True, c.wallet, "active",
                               0, None, None) for n, c in enumerate(self.cards)},
            balances=dict(self.balances),
            catalogue={"TMP001": ItemFacts("TMP001", "protein", True)},
            record_ids=list(range(1, 5_000)), transfer_ids=list(range(1, 5_000)))
        self.host = PureHost(facts)
        self.reader = EmulatedReader()
        self.edc = Edc(EdcConfig(TID, MID, TMK), DirectLink(self.host.exchange), self.reader,
                       clock=FixedClock())
        assert self.edc.logon().approved
        self.sent: list[Sent] = []

    # -- rules -------------------------------------------------------------------------

    @rule(card=st.integers(0, 2), tempe=st.integers(1, 4), right_pin=st.booleans())
    def purchase(self, card: int, tempe: int, right_pin: bool) -> None:
        model = self.cards[card]
        self.reader.swap(model.kks)
        basket = [BasketLine(TEMPE.item_code, tempe, TEMPE.unit_price_sen)]
        amount_sen = tempe * TEMPE.unit_price_sen
        unit = self.edc.prepare_purchase(basket, model.pin if right_pin else "000000")
        response = self._exchange(unit)
        expected = self._expect_card_request(model, right_pin, amount_sen)
        assert response.opt_text(39) == expected, (response.opt_text(39), expected)
        debited = amount_sen if expected == codes.APPROVED else 0
        self.balances[model.wallet] -= debited
        self.balances[PAYABLE] += debited
        if expected in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
            assert decode_balance(response.text(54)) == self.balances[model.wallet]
        self.sent.append(Sent(decode_unit(unit).message, response, card, debited))

    @rule(card=st.integers(0, 2), right_pin=st.booleans())
    def balance_inquiry(self, card: int, right_pin: bool) -> None:
        model = self.cards[card]
        self.reader.swap(model.kks)
        result = self.edc.balance_inquiry(model.pin if right_pin else "000000")
        assert result.rc == self._expect_card_request(model, right_pin, 0)
        if result.rc == codes.APPROVED:
            assert result.balance_sen == self.balances[model.wallet]

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same request again: the stored answer (MAC aside), nothing moves."""
        if not self.sent:
            return
        original = data.draw(st.sampled_from(self.sent))
        again = self._exchange(self.edc.encode_unit(original.request))
        assert _without_mac(again) == _without_mac(original.response)

    @rule(data=st.data())
    def duplicate_with_other_content(self, data: st.DataObject) -> None:
        if not self.sent:
            return
        original = data.draw(st.sampled_from(self.sent))
        changed = original.request.with_fields(de12="235959")
        assert self._exchange(self.edc.encode_unit(changed)).opt_text(39) == \
            codes.DUPLICATE_DIFFERENT

    @rule(data=st.data(), repeats=st.integers(0, 2))
    def reverse(self, data: st.DataObject, repeats: int) -> None:
        """A reversal (0400, then ``repeats`` 0401s) restores an approved debit once."""
        if not self.sent:
            return
        original = data.draw(st.sampled_from(self.sent))
        for mti in ["0400"] + ["0401"] * repeats:
            answer = self._exchange(self._reversal_of(original.request, mti))
            assert answer.opt_text(39) == codes.APPROVED
        if not original.reversed:
            original.reversed = True
            self.balances[self.cards[original.card].wallet] += original.debited_sen
            self.balances[PAYABLE] -= original.debited_sen

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

    @rule(data=st.data())
    def atc_replay(self, data: st.DataObject) -> None:
        """An old cryptogram under a new STAN: its ATC is not above the last one (63),
        unless the card is blocked (62, checked first)."""
        if not self.sent:
            return
        original = data.draw(st.sampled_from(self.sent))
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
        self.allocated_sen += amount_sen

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        if hasattr(self, "host"):
            assert self.host.facts.balances == self.balances

    @invariant()
    def money_is_conserved(self) -> None:
        if hasattr(self, "host"):
            assert sum(self.host.facts.balances.values()) == 2 * START_SEN + self.allocated_sen

    @invariant()
    def pin_tries_match_the_model(self) -> None:
        if not hasattr(self, "host"):
            return
        for model in self.cards:
            card = self.host.facts.cards[model.pan]
            assert (card.wrong_pin_count, card.status) == (
                model.wrong_pins, "blocked" if model.blocked else "active")

    @invariant()
    def no_key_moves_money_twice(self) -> None:
        if not hasattr(self, "host"):
            return
        postings = [e for e in self.host.effects if isinstance(e, Posting)]
        keys = [p.idempotency_key for p in postings]
        assert len(keys) == len(set(keys))
        reversed_ids = [p.reverses_transfer_id for p in postings if p.kind == "reversal"]
        assert len(reversed_ids) == len(set(reversed_ids))

    # -- helpers -----------------------------------------------------------------------

    def _exchange(self, unit: bytes) -> Message:
        answer = self.host.exchange(unit)
        assert answer is not None, "the core closed a connection"
        return decode_unit(answer).message

    def _reversal_of(self, request: Message, mti: str) -> bytes:
        fields = {k: v for k, v in request.fields.items() if k not in (52, 64)}
        return self.edc.encode_unit(Message(mti, fields))

    def _expect_card_request(self, model: CardModel, right_pin: bool, amount_sen: int) -> str:
        """The model's answer, and its PIN counter moved as the host must move it."""
        if model.blocked:
            return codes.RESTRICTED_CARD
        if not right_pin:
            model.wrong_pins += 1
            if model.wrong_pins >= MAX_PIN_TRIES:
                model.blocked = True
                return codes.PIN_TRIES_EXCEEDED
            return codes.WRONG_PIN
        model.wrong_pins = 0
        if amount_sen > self.balances[model.wallet]:
            return codes.INSUFFICIENT_BALANCE
        return codes.APPROVED


def _without_mac(message: Message) -> bytes:
    return encode(Message(message.mti, {k: v for k, v in message.fields.items() if k != 64}))


CoreMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestCore = CoreMachine.TestCase

