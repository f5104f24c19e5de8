"""A Hypothesis state machine over the ledger and the authorization rules, driven
through the real HostService by real EDCs (emulated chip cards, PIN blocks,
MACs) over ``DirectLink``; on SQLite always, on PostgreSQL when it is there.

Rules: allocation, purchases (right and wrong PIN), group-commit batches of
purchases decided in one transaction, balance inquiries,
duplicates with the same and with different content, reversals after the
original (and repeated), reversals before the original, card blocks and
reactivations; and the day's end (HOST_SPEC §4): voids (of approved, declined,
reversed, voided and settled purchases), reversals of voids (reinstating the debit,
or standing when the wallet no longer covers it), and settlements (920000, or 95 →
batch upload → 960000 when the EDC's batch and the switch's differ, as they do after
a group-commit purchase or a reversal the EDC did not send itself).  After every step:
the money invariant, a simple model of balances and blocked cards agrees with the
database, every closed batch's settled totals are the ledger's
(``check_settlements``), a settlement or batch upload moved no money, and stored
responses are replayed byte-identical except for the MAC.

One seeded database per engine and module; each example starts its model from
what the database holds, and uses fresh STANs and period codes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import DemoCard, build_world, seed_database
from switch.admin.registry import Registry
from switch.clock import FixedClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Account, Card, Kpm
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants, check_settlements
from switch.ledger.postings import allocate_period
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security.keyring import Keyring
from switch.security.keys import pan_token
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink

pytestmark = pytest.mark.slow

CARDS_IN_PLAY = 4
TERMINALS_IN_PLAY = 2
ALLOCATION_SEN = 5_000_000
#: Cheap (many fit) and dear (a few drain a wallet to RC 51).
ITEMS = (BasketLine("TMP001", 1, 500_000), BasketLine("BRS010", 1, 14_000_000))
MAC_LEN = 8
STAN_BLOCK = 1000


@dataclass
class Engine:
    db: Database
    host: HostService
    keys: Keyring
    cards: list[DemoCard]
    terminals: list[tuple[str, str, bytes]]
    chips: dict[str, KksCard] = field(default_factory=dict)
    stans: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    periods: Iterator[int] = field(default_factory=lambda: itertools.count(0))


def _engine(url: str) -> Engine:
    # The precheck on: its memoized checks must never change a decision.
    settings_ = Settings(database_url=url, group_commit_precheck=True)
    keys = Keyring.from_settings(settings_)
    db = open_database(url, sqlite_synchronous="NORMAL")
    demo = build_world(kpm_count=CARDS_IN_PLAY, terminal_count=TERMINALS_IN_PLAY)
    seed_database(db, keys, demo)
    allocate_period(db, "2026-11", ALLOCATION_SEN * 4)
    terminals = [(t.tid, t.mid, t.tmk) for t in demo.terminals if t.label == "ok"]
    return Engine(db, HostService(db, settings_, FixedClock()), keys,
                  demo.cards_labelled("ok")[:CARDS_IN_PLAY], terminals[:TERMINALS_IN_PLAY])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Engine]:
    if request.param == "sqlite":
        built = _engine(f"sqlite:///{tmp_path_factory.mktemp('stateful') / 'ledger.db'}")
        yield built
        built.db.dispose()
        return
    from tests.postgres.pg import fresh_database

    with fresh_database("bpnt_stateful") as url:
        built = _engine(url)
        yield built
        built.db.dispose()


@dataclass
class Sent:
    """A financial request as sent, and what the host first answered."""

    edc: int
    unit: bytes
    request: Message
    reply: bytes
    card: int
    amount_sen: int
    approved: bool
    reversed: bool = False
    #: A reversal of it was answered (a repeat is a no-op, whatever it restored).
    reversal_used: bool = False
    #: Its terminal settled since: no longer in an open batch.
    settled: bool = False
    #: The void that stands against it, and whether that void's reversal was used.
    void: Message | None = None
    void_reversal_used: bool = False
    item: BasketLine | None = None


def _wrong(pin: str) -> str:
    return f"{(int(pin) + 1) % 10**6:06d}"


def make_machine(env: Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.edcs: list[Edc] = []
            self.last: list[tuple[bytes, bytes]] = []
            for n, (tid, mid, tmk) in enumerate(env.terminals):
                edc = Edc(EdcConfig(tid, mid, tmk), DirectLink(self._recording(n)),
                          EmulatedReader(), clock=env.host.clock)
                edc.stan = next(env.stans) * STAN_BLOCK
                self.last.append((b"", b""))
                assert edc.ensure_logged_on()
                # a new EDC's invoices start at 000001: close what an earlier example
                # left in the switch's batch (95 -> upload of nothing -> 960000)
                assert edc.settle().rc == codes.APPROVED
                self.edcs.append(edc)
            self.balance = [self._db_balance(c) for c in range(len(env.cards))]
            self.blocked = [self._db_status(c) != "active" for c in range(len(env.cards))]
            self.wrong_pins = [self._db_wrong_pins(c) for c in range(len(env.cards))]
            self.sent: list[Sent] = []

        # -- plumbing --------------------------------------------------------------

        def _recording(self, n: int) -> Callable[[bytes], bytes | None]:
            def handle(unit: bytes) -> bytes | None:
                reply = env.host.process_unit(unit)
                self.last[n] = (unit, reply or b"")
                return reply
            return handle

        def _edc(self, terminal: int, card: int) -> Edc:
            edc = self.edcs[terminal]
            demo = env.cards[card]
            if demo.pan not in env.chips:
                profile = profile_for(demo.pan, demo.psn, demo.expiry_yymm, env.keys.imk_ac)
                env.chips[demo.pan] = KksCard(profile)
            reader = edc.reader
            assert isinstance(reader, EmulatedReader)
            reader.swap(env.chips[demo.pan])
            return edc

        def _card_row(self, card: int) -> tuple[Card, int]:
            token = pan_token(env.keys.pan_token_key, env.cards[card].pan)
            with env.db.transaction() as session:
                row = session.execute(
                    select(Card, Account.balance_sen).join(Kpm, Kpm.id == Card.kpm_id)
                    .join(Account, Account.id == Kpm.wallet_account_id)
                    .where(Card.pan_token == token)).one()
            return row[0], int(row[1])

        def _db_balance(self, card: int) -> int:
            return self._card_row(card)[1]

        def _db_status(self, card: int) -> str:
            return self._card_row(card)[0].status

        def _db_wrong_pins(self, card: int) -> int:
            return self._card_row(card)[0].wrong_pin_count

        def _expect(self, card: int, pin_ok: bool, amount_sen: int | None) -> str:
            """The model's RC for a balance inquiry (None) or purchase, and its effects."""
            if self.blocked[card]:
                return codes.RESTRICTED_CARD
            if not pin_ok:
                self.wrong_pins[card] += 1
                if self.wrong_pins[card] >= 3:
                    self.blocked[card] = True
                    return codes.PIN_TRIES_EXCEEDED
                return codes.WRONG_PIN
            self.wrong_pins[card] = 0
            if amount_sen is None:
                return codes.APPROVED
            if amount_sen > self.balance[card]:
                return codes.INSUFFICIENT_BALANCE
            self.balance[card] -= amount_sen
            return codes.APPROVED

        # -- rules -----------------------------------------------------------------

        @rule(card=st.integers(0, CARDS_IN_PLAY - 1), terminal=st.integers(0, 1),
              item=st.sampled_from(ITEMS), qty=st.integers(1, 2), pin_ok=st.booleans())
        def purchase(self, card: int, terminal: int, item: BasketLine, qty: int,
                     pin_ok: bool) -> None:
            line = BasketLine(item.item_code, qty, item.unit_price_sen)
            edc = self._edc(terminal, card)
            pin = env.cards[card].pin
            result = edc.purchase([line], pin if pin_ok else _wrong(pin))
            expected = self._expect(card, pin_ok, line.total_sen)
            assert result.rc == expected, (result, expected)
            assert edc.last_request is not None
            unit, reply = self.last[terminal]
            self.sent.append(Sent(terminal, unit, edc.last_request, reply, card,
                                  line.total_sen, expected == codes.APPROVED, item=line))

        @rule(card=st.integers(0, CARDS_IN_PLAY - 1), terminal=st.integers(0, 1),
              pin_ok=st.booleans())
        def balance_inquiry(self, card: int, terminal: int, pin_ok: bool) -> None:
            edc = self._edc(terminal, card)
            pin = env.cards[card].pin
            result = edc.balance_inquiry(pin if pin_ok else _wrong(pin))
            expected = self._expect(card, pin_ok, None)
            assert result.rc == expected
            if expected == codes.APPROVED:
                assert result.balance_sen == self.balance[card]

        @rule(data=st.data(), size=st.integers(2, 6), repeat=st.booleans())
        def group_commit_batch(self, data: st.DataObject, size: int, repeat: bool) -> None:
            """Several purchases decided in ONE transaction (issue 3 group commit), in
            order: a later one sees an earlier one's debit and PIN count, a repeat in
            the same batch replays the earlier answer, declines roll nothing back."""
            units: list[bytes] = []
            planned: list[tuple[int, int, BasketLine, str]] = []  # terminal, card, item, RC
            for _ in range(size):
                card = data.draw(st.integers(0, CARDS_IN_PLAY - 1))
                terminal = data.draw(st.integers(0, 1))
                item = data.draw(st.sampled_from(ITEMS))
                pin_ok = data.draw(st.booleans())
                pin = env.cards[card].pin
                units.append(self._edc(terminal, card).prepare_purchase(
                    [item], pin if pin_ok else _wrong(pin)))
                planned.append((terminal, card, item,
                                self._expect(card, pin_ok, item.total_sen)))
            repeated = data.draw(st.integers(0, size - 1)) if repeat else None
            if repeated is not None:
                units.append(units[repeated])
            answers = env.host.process_batch(units)
            assert all(answer is not None for answer in answers)
            for unit, answer, (terminal, card, item, rc) in zip(units, answers, planned,
                                                               strict=False):
                assert answer is not None
                assert decode_unit(answer).message.opt_text(39) == rc
                self.sent.append(Sent(terminal, unit, decode_unit(unit).message, answer, card,
                                      item.total_sen, rc == codes.APPROVED,
                                      item=item))
            if repeated is not None:
                assert answers[-1] == answers[repeated]  # same TAK, so even the MAC

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def duplicate_same(self, data: st.DataObject) -> None:
            sent = data.draw(st.sampled_from(self.sent))
            again = env.host.process_unit(sent.unit)
            assert again is not None
            # HOST_SPEC §4: byte-identical except the MAC (DE 64, the last 8 bytes).
            assert again[:-MAC_LEN] == sent.reply[:-MAC_LEN]

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def duplicate_different(self, data: st.DataObject) -> None:
            sent = data.draw(st.sampled_from(self.sent))
            amount = sent.amount_sen + 500_000
            changed = sent.request.with_fields(
                de4=f"{amount:012d}", de48=f"TMP001{amount // 500_000:03d}000000500000")
            answer = self.edcs[sent.edc].resend(changed)
            assert answer.opt_text(39) == codes.DUPLICATE_DIFFERENT

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            """After the original; may repeat (0400 or 0401)."""
            sent = data.draw(st.sampled_from(self.sent))
            mti = data.draw(st.sampled_from(["0400", "0401"]))
            reversal = Message(mti, {k: v for k, v in sent.request.fields.items()
                                     if k not in (52, 64)})
            answer = self.edcs[sent.edc].resend(reversal)
            assert answer.opt_text(39) == codes.APPROVED
            if sent.reversal_used:
                return  # a repeat: the stored answer, nothing moves
            sent.reversal_used = True
            if sent.approved and sent.void is None:  # a standing void paid it back already
                self.balance[sent.card] += sent.amount_sen
                sent.reversed = True

        @rule(card=st.integers(0, CARDS_IN_PLAY - 1), terminal=st.integers(0, 1))
        def reversal_before_original(self, card: int, terminal: int) -> None:
            edc = self._edc(terminal, card)
            unit = edc.prepare_purchase([ITEMS[0]], env.cards[card].pin)
            request = decode_unit(unit).message
            reversal = Message("0400", {k: v for k, v in request.fields.items()
                                        if k not in (52, 64)})
            assert edc.resend(reversal).opt_text(39) == codes.APPROVED
            reply = env.host.process_unit(unit)
            assert reply is not None
            assert decode_unit(reply).message.opt_text(39) == codes.DO_NOT_HONOUR
            self.sent.append(Sent(terminal, unit, request, reply, card, ITEMS[0].total_sen,
                                  approved=False, item=ITEMS[0]))

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def void(self, data: st.DataObject) -> None:
            """0200/020000 by invoice, card and PIN again (forced past the EDC's own
            check, so the switch's 25 and 12 are met too)."""
            # an invoice names one transaction of the open batch; a settled one's
            # invoice may since name a new purchase (the EDC counts from 000001 again)
            sent = data.draw(st.sampled_from([
                s for s in self.sent if not any(
                    o is not s and o.edc == s.edc and not o.settled
                    and o.request.text(62) == s.request.text(62) for o in self.sent)]))
            assert sent.item is not None
            edc = self._edc(sent.edc, sent.card)
            if self.blocked[sent.card]:
                expected = codes.RESTRICTED_CARD
            elif not sent.approved or sent.reversed or sent.settled:
                expected = codes.ORIGINAL_NOT_FOUND
            elif sent.void is not None:
                expected = codes.INVALID_TRANSACTION
            else:
                expected = codes.APPROVED
            before = self.balance[sent.card]
            result = edc.void(sent.request.text(62), env.cards[sent.card].pin, force=True,
                              basket=[sent.item])
            assert result.rc == expected, (result, expected, sent)
            if not self.blocked[sent.card]:
                self.wrong_pins[sent.card] = 0
            if expected == codes.APPROVED:
                assert edc.last_request is not None
                sent.void, sent.void_reversal_used = edc.last_request, False
                self.balance[sent.card] = before + sent.amount_sen

        @precondition(lambda self: any(s.void is not None for s in self.sent))
        @rule(data=st.data(), mti=st.sampled_from(["0400", "0401"]))
        def reverse_void(self, data: st.DataObject, mti: str) -> None:
            """A void's reversal reinstates the debit, or (the wallet no longer covers
            it) is answered 00 and the void stands."""
            sent = data.draw(st.sampled_from([s for s in self.sent if s.void is not None]))
            assert sent.void is not None
            reversal = Message(mti, {k: v for k, v in sent.void.fields.items()
                                     if k not in (52, 64)})
            assert self.edcs[sent.edc].resend(reversal).opt_text(39) == codes.APPROVED
            if sent.void_reversal_used:
                return
            sent.void_reversal_used = True
            if self.balance[sent.card] >= sent.amount_sen and not sent.settled:
                self.balance[sent.card] -= sent.amount_sen
                sent.void = None  # the purchase stands again (and may be voided again)
            elif self.balance[sent.card] >= sent.amount_sen:
                self.balance[sent.card] -= sent.amount_sen  # reinstated after settling
                sent.void = None

        @rule(terminal=st.integers(0, TERMINALS_IN_PLAY - 1))
        def settle(self, terminal: int) -> None:
            """The EDC settles: 00 at once, or 95 -> uploads -> 960000 -> 00 when its
            batch differs from the switch's; either way nothing moves."""
            before = [self._db_balance(c) for c in range(len(env.cards))]
            result = self.edcs[terminal].settle()
            assert result.rc == codes.APPROVED, result
            assert [self._db_balance(c) for c in range(len(env.cards))] == before
            for sent in self.sent:
                if sent.edc == terminal:
                    sent.settled = True

        @rule(card=st.integers(0, CARDS_IN_PLAY - 1), block=st.booleans())
        def set_card_status(self, card: int, block: bool) -> None:
            with env.db.transaction() as session:
                Registry(session, env.keys, actor="admin:stateful").set_card_status(
                    env.cards[card].pan, "blocked" if block else "active", reason="test")
            self.blocked[card] = block
            if not block:
                self.wrong_pins[card] = 0

        @rule()
        def allocate(self) -> None:
            n = next(env.periods)
            allocate_period(env.db, f"{2100 + n // 12}-{n % 12 + 1:02d}", ALLOCATION_SEN)
            self.balance = [b + ALLOCATION_SEN for b in self.balance]

        # -- invariants --------------------------------------------------------------

        @invariant()
        def money_is_conserved(self) -> None:
            report = check_invariants(env.db)
            assert report.ok, report.summary()

        @invariant()
        def model_agrees_with_database(self) -> None:
            for card in range(len(env.cards)):
                row, balance = self._card_row(card)
                assert balance == self.balance[card] >= 0
                assert (row.status != "active") == self.blocked[card]

        @invariant()
        def settled_totals_are_the_ledgers(self) -> None:
            assert check_settlements(env.db) == []

        @invariant()
        def replies_are_signed_units(self) -> None:
            for unit, reply in self.last:
                if unit:
                    assert len(reply) > TPDU_LEN + MAC_LEN

    return LedgerMachine


def test_ledger_state_machine(engine: Engine) -> None:
    run_state_machine_as_test(make_machine(engine), settings=settings(
        max_examples=12, stateful_step_count=20, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))

