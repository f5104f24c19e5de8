"""A terminal's day-end messages built by hand from HOST_SPEC 1.1 §4, over a logged-on
:class:`~terminal_sim.edc.Edc` of the test world (its keys, its purchases), for the
switch's tests: void, reversal, batch upload and settlement as an outside vendor
would send them, answers checked for DE 37 and the MAC (§3, §6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from switch.core.batch import Totals
from switch.db.tables import Account
from switch.protocol.message import Message
from switch.protocol.unit import decode_unit
from switch.security import mac
from switch.security.pin import encrypt_pin_block
from terminal_sim.edc import Edc
from tests.world import HostWorld


@dataclass
class Answer:
    message: Message
    signed: bool

    @property
    def rc(self) -> str:
        return self.message.text(39)


@dataclass
class DayEndClient:
    world: HostWorld
    edc: Edc
    stan: int = 500_000
    pin: str | None = None
    #: Approved purchases and voids the terminal holds: (request, answer).
    held: list[tuple[Message, Message]] = field(default_factory=list)

    def next_stan(self) -> str:
        self.stan += 1
        return f"{self.stan:06d}"

    def send(self, request: Message) -> Answer:
        unit = self.world.host.process_unit(self.edc.encode_unit(request))
        assert unit is not None, "the switch answered"
        raw = unit[5:]
        response = decode_unit(unit).message
        tak = self.edc._tak
        signed = response.has(64) and tak is not None and mac.verify(tak, raw)
        assert not response.has(64) or signed, "a DE 64 that does not verify"
        return Answer(response, signed)

    def purchase(self, basket: list, pin: str) -> tuple[Message, Message]:  # type: ignore[type-arg]
        result = self.edc.purchase(basket, pin)
        assert result.rc == "00", result
        request = self.edc.last_request
        assert request is not None
        response = self.send(request).message  # a repeat: the stored answer again (§4)
        assert response.text(39) == "00"
        self.held.append((request, response))
        return request, response

    def swiped(self, chip: Message, **changes: str | bytes) -> Message:
        """A magstripe copy of a chip purchase (no cryptogram to go stale: DE 22 021,
        no DE 23/55) with a new DE 11 and invoice, and ``de<N>=`` changes."""
        fields = {de: v for de, v in chip.fields.items() if de not in (23, 55, 64)}
        fields.update({11: self.next_stan(), 22: "021", 62: f"{self.stan % 10**6:06d}"})
        fields.update({int(k.removeprefix("de")): v for k, v in changes.items()})
        return Message(chip.mti, fields)

    def void(self, purchase: Message, *, invoice: str | None = None,
             amount_sen: int | None = None) -> tuple[Message, Answer]:
        """0200/020000: the purchase's DEs, the card swiped again (no new cryptogram)."""
        fields = {de: v for de, v in purchase.fields.items() if de not in (23, 55, 64)}
        fields.update({3: "020000", 11: self.next_stan(), 22: "021"})
        if self.pin is not None:  # the PIN entered again, under this terminal's TPK
            tpk = self.edc._tpk
            assert tpk is not None
            pan = str(fields[35]).split("D")[0]
            fields[52] = encrypt_pin_block(tpk, self.pin, pan)
        if invoice is not None:
            fields[62] = invoice
        if amount_sen is not None:
            fields[4] = f"{amount_sen:012d}"
        request = Message("0200", fields)
        return request, self.send(request)

    def reversal(self, original: Message, mti: str = "0400") -> Answer:
        fields = {de: v for de, v in original.fields.items() if de not in (52, 64)}
        return self.send(Message(mti, fields))

    def settle(self, totals: Totals, batch: str = "000001", code: str = "920000",
               stan: str | None = None) -> tuple[Message, Answer]:
        request = Message("0500", {3: code, 11: stan or self.next_stan(), 24: "001",
                                   41: self.edc.config.tid, 42: self.edc.config.mid,
                                   60: batch, 63: totals.encode()})
        return request, self.send(request)

    def upload(self, request: Message, response: Message, batch: str = "000001",
               amount_sen: int | None = None) -> Answer:
        """0320 for a held transaction: DE 3 with the last digit 1, DE 12/13 the
        original's, DE 37/38 its RRN and approval code."""
        code = request.text(3)[:5] + "1"
        return self.send(Message("0320", {
            3: code, 4: f"{amount_sen:012d}" if amount_sen is not None else request.text(4),
            11: self.next_stan(), 12: request.text(12), 13: request.text(13),
            24: "001", 37: response.text(37), 38: response.text(38),
            41: request.text(41), 42: request.text(42), 60: batch, 62: request.text(62)}))


@pytest.fixture(name="world")
def both_engines_world(engine_world: HostWorld) -> HostWorld:
    """The day-end tests run on both engines (``engine_world``, tests/conftest.py)."""
    return engine_world


@pytest.fixture(name="client")
def logged_on_client(world: HostWorld) -> DayEndClient:
    """A logged-on EDC of the world, with the first card inserted and its PIN."""
    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    return DayEndClient(world, edc, pin=card.pin)


def balances(world: HostWorld) -> dict[int, int]:
    """Every account's balance (the money that moved is the difference of two)."""
    with world.db.transaction() as session:
        return {int(a): int(b) for a, b in session.execute(
            select(Account.id, Account.balance_sen)).all()}


def moved(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    return {account: after[account] - before.get(account, 0) for account in after
            if after[account] != before.get(account, 0)}
