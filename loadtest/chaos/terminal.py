"""One EDC of the chaos fleet, behaving as HOST_SPEC §4-§6 says a terminal does, and
writing down everything it sends and sees (:mod:`.history`).

It drives a real :class:`terminal_sim.edc.Edc` (real emulated cards: ARQC, PIN block
under the TPK, MAC under the TAK, the response MAC checked), but keeps the reversal
rule itself, to the letter of the spec:

* no answer in time, a broken connection after the send, an unreadable or unverifiable
  answer, or an **unsigned 91** (§6): the purchase's reversal is pending;
* a pending reversal goes before the next purchase (§5): 0400 first, 0401 after; it
  is settled only by a 00 (§4: a reversal is answered 00 even when its original is
  unknown, so any other answer, a 91 above all, means nothing was reversed and it is
  repeated); while it is pending no purchase is started;
* a link that cannot be opened: the request never left, nothing to reverse;
* RC 63: the working keys are stale; the terminal logs on before its next request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from card_emulator.card import KksCard
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.errors import ProtocolError
from switch.protocol.message import Message
from switch.protocol.unit import decode_unit
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc
from terminal_sim.link import Link, LinkDown, LinkError, LinkTimeout, NotConnected

from .history import (
    ANSWERED,
    BAD_RESPONSE,
    LINK_DOWN,
    LOGON,
    NOT_SENT,
    PURCHASE,
    REVERSAL,
    TIMEOUT,
    Exchange,
    History,
    key_of,
)


@dataclass(frozen=True)
class PaymentCard:
    """A KPM's card as the fleet holds it: the emulated chip and its PIN."""

    chip: KksCard
    pin: str


@dataclass
class _Pending:
    """The reversal of one purchase, with its original's fields (without DE 52/64)."""

    key: str
    amount_sen: int
    fields: dict[int, str | bytes]
    sent_once: bool = False


class ChaosTerminal:
    def __init__(self, edc: Edc, reader: EmulatedReader, cards: list[PaymentCard],
                 basket: list[BasketLine], history: History, *, timeout_s: float) -> None:
        assert cards, "a terminal needs cards"
        self.edc = edc
        self.reader = reader
        self.cards = cards
        self.basket = basket
        self.history = history
        self.edc.config = replace(edc.config, timeout_s=timeout_s)
        self._tap = _AnswerTap(edc.link)
        self.edc.link = self._tap
        self.pending: _Pending | None = None
        self.needs_logon = not edc.logged_on
        self._next_card = 0

    @property
    def tid(self) -> str:
        return self.edc.config.tid

    # -- the two things a terminal does ---------------------------------------------

    def purchase(self, scheduled_s: float) -> bool:
        """One purchase, after the pending reversal (if that is delivered) and a logon
        (if one is owed); otherwise the purchase is skipped.  True when it was tried."""
        if self.pending is not None and not self.try_reversal():
            self.history.skip(self.tid, "reversal pending")
            return False
        if self.needs_logon and not self._logon():
            self.history.skip(self.tid, "not logged on")
            return False
        card = self.cards[self._next_card % len(self.cards)]
        self._next_card += 1
        self.reader.swap(card.chip)
        request = decode_unit(self.edc.prepare_purchase(self.basket, card.pin)).message
        key = key_of(self.tid, request.text(13), request.text(11))
        amount_sen = int(request.text(4))
        # stored before sending: if no answer comes, this is what undoes it
        pending = _Pending(key, amount_sen,
                           {k: v for k, v in request.fields.items() if k not in (52, 64)})
        exchange = self._exchange(PURCHASE, key, request, amount_sen, scheduled_s)
        if exchange.indeterminate:
            self.pending = pending
        return True

    def try_reversal(self) -> bool:
        """One attempt to deliver the pending reversal; True when none is left."""
        pending = self.pending
        if pending is None:
            return True
        if self.needs_logon and not self._logon():
            return False
        request = Message("0401" if pending.sent_once else "0400", pending.fields)
        exchange = self._exchange(REVERSAL, pending.key, request, pending.amount_sen)
        if exchange.outcome != NOT_SENT:
            pending.sent_once = True
        if exchange.approved:
            self.pending = None
        return self.pending is None

    # -- plumbing ---------------------------------------------------------------------

    def _logon(self) -> bool:
        sent_s = self.history.clock.now_s()
        result = self.edc.logon()
        outcome = ANSWERED if result.rc is not None else TIMEOUT if result.timed_out \
            else NOT_SENT
        self.history.add(Exchange(LOGON, self.tid, "", "0800", 0, sent_s,
                                  self.history.clock.now_s(), outcome, result.rc,
                                  signed=False))
        self.needs_logon = not result.approved
        return result.approved

    def _exchange(self, op: str, key: str, request: Message, amount_sen: int,
                  scheduled_s: float | None = None) -> Exchange:
        """Send ``request`` (MAC'd under the current TAK), record what came back."""
        clock = self.history.clock
        sent_s = clock.now_s()
        rc: str | None = None
        signed = False
        rrn: str | None = None
        detail = ""
        self._tap.last = None
        try:
            response = self.edc.resend(request)
            outcome = ANSWERED
            rc = response.opt_text(39) or codes.SYSTEM_MALFUNCTION
            signed = response.has(64)
            rrn = response.opt_text(37)
        except NotConnected as exc:
            outcome, detail = NOT_SENT, str(exc)
        except LinkTimeout as exc:
            outcome, detail = TIMEOUT, str(exc)
        except LinkDown as exc:
            outcome, detail = LINK_DOWN, str(exc)
        except LinkError as exc:
            outcome, detail = BAD_RESPONSE, str(exc)
            if _unsigned_91(self._tap.last):
                # the EDC refused it as no answer (HOST_SPEC §6): it is still a 91
                outcome, rc, rrn = ANSWERED, codes.HOST_UNAVAILABLE, None
        if rc == codes.SECURITY_VIOLATION:
            self.needs_logon = True
        exchange = Exchange(op, self.tid, key, request.mti, amount_sen, sent_s, clock.now_s(),
                            outcome, rc, signed, rrn, scheduled_s, detail[:120])
        self.history.add(exchange)
        return exchange


class _AnswerTap:
    """The terminal's link, keeping the last response unit: when the EDC refuses an
    answer (an unsigned 91 is no answer to it, HOST_SPEC §6) the history still says
    what arrived."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.last: bytes | None = None

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.last = self.inner.exchange(unit, timeout_s)
        return self.last

    def close(self) -> None:
        self.inner.close()


def _unsigned_91(unit: bytes | None) -> bool:
    if unit is None:
        return False
    try:
        response = decode_unit(unit).message
    except ProtocolError:
        return False
    return response.opt_text(39) == codes.HOST_UNAVAILABLE and not response.has(64)
