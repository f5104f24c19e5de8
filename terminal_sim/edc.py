"""The e-warong EDC as a state machine (HOST_SPEC §4-6).

idle → card inserted → application selected → card read → amount → PIN →
online → receipt → idle.  A request that gets no response (or an unsigned 91,
HOST_SPEC §6) leaves a pending reversal that is sent before the next transaction
(HOST_SPEC §5); it is repeated (0401) until the host answers it other than 91
(a 91 committed nothing: the reversal stays pending for later).

The day end: a void (idle → original selected → card … PIN → online → receipt)
cancels a purchase of the open batch (:mod:`terminal_sim.batch`); a settlement
(idle → settlement → [batch upload → settlement] → report → idle) closes it.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from switch.clock import Clock, SystemClock
from switch.money import rupiah
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, decode_balance, decode_basket, encode_basket
from switch.protocol.errors import ProtocolError
from switch.protocol.message import Message, encode, mask_pan
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import mac
from switch.security.keys import parse_key_data
from switch.security.pin import encrypt_pin_block
from terminal_sim import emv
from terminal_sim.batch import Batch, BatchEntry, Kind, Totals, card_ref
from terminal_sim.card_reader import CardReader, ReaderError
from terminal_sim.link import Link, LinkError, NotConnected
from terminal_sim.receipt import purchase_receipt
from terminal_sim.settlement_slip import settlement_slip

log = logging.getLogger("bpnt.edc")


class State(enum.Enum):
    IDLE = "idle"
    CARD_INSERTED = "card inserted"
    CARD_SWIPED = "card swiped"
    APP_SELECTED = "application selected"
    CARD_READ = "card read"
    AMOUNT_ENTERED = "amount entered"
    PIN_ENTERED = "PIN entered"
    ONLINE = "online"
    RECEIPT = "receipt"
    VOID_SELECTED = "void: original selected"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch upload"
    SETTLEMENT_REPORT = "settlement report"


#: The legal moves; any other is a bug in the simulator (an assertion).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.CARD_INSERTED, State.CARD_SWIPED, State.ONLINE,
                           State.VOID_SELECTED, State.SETTLEMENT}),
    State.VOID_SELECTED: frozenset({State.CARD_INSERTED, State.IDLE}),
    State.CARD_SWIPED: frozenset({State.PIN_ENTERED, State.IDLE}),
    State.CARD_INSERTED: frozenset({State.APP_SELECTED, State.IDLE}),
    State.APP_SELECTED: frozenset({State.CARD_READ, State.IDLE}),
    State.CARD_READ: frozenset({State.AMOUNT_ENTERED, State.PIN_ENTERED, State.IDLE}),
    State.AMOUNT_ENTERED: frozenset({State.PIN_ENTERED, State.IDLE}),
    State.PIN_ENTERED: frozenset({State.ONLINE, State.IDLE}),
    State.ONLINE: frozenset({State.RECEIPT, State.IDLE}),
    State.RECEIPT: frozenset({State.IDLE}),
    State.SETTLEMENT: frozenset({State.BATCH_UPLOAD, State.SETTLEMENT_REPORT, State.IDLE}),
    State.BATCH_UPLOAD: frozenset({State.SETTLEMENT, State.SETTLEMENT_REPORT, State.IDLE}),
    State.SETTLEMENT_REPORT: frozenset({State.IDLE}),
}

MAX_STAN = 999_999
#: HOST_SPEC §3 DE 22: chip + PIN, magnetic stripe + PIN, chip fallen back to the stripe.
CHIP_ENTRY = "051"
STRIPE_ENTRY = "021"
FALLBACK_ENTRY = "801"
#: Attempts to deliver a pending reversal before a transaction is refused.
REVERSAL_ATTEMPTS = 3
#: HOST_SPEC §5: original not found (void), settlement totals do not match.
ORIGINAL_NOT_FOUND = "25"
TOTALS_MISMATCH = "95"
#: Shown when a void names an invoice the EDC's batch does not hold (refused locally).
VOID_NOT_FOUND_DISPLAY = codes.display_for(ORIGINAL_NOT_FOUND)
#: Shown when the card presented for a void is not the original's (refused locally).
WRONG_CARD_DISPLAY = "KARTU TIDAK SESUAI"
#: Shown when DE 63 cannot carry the batch's totals (over 999 of a kind).
BATCH_FULL_DISPLAY = "BATCH PENUH"
#: EMV 9C: the first two digits of DE 3.
VOID_TXN_TYPE = 0x02
_RECEIPT_TITLES = {"purchase": "PEMBELIAN BPNT", "balance": "INFO SALDO BPNT",
                   "void": "VOID PEMBELIAN BPNT"}


@dataclass(frozen=True)
class EdcConfig:
    tid: str
    mid: str
    tmk: bytes = field(repr=False)
    nii: str = "0001"
    #: HOST_SPEC §5: the terminal timeout, default 30 s.
    timeout_s: float = 30.0
    #: The header of receipts and the settlement slip.
    merchant_name: str = "E-WARONG BPNT"


@dataclass(frozen=True)
class TxnResult:
    """What the cardholder and agent saw."""

    kind: str
    rc: str | None
    display: str
    stan: str = ""
    amount_sen: int = 0
    balance_sen: int | None = None
    receipt: tuple[str, ...] = ()
    timed_out: bool = False
    #: DE 62 of a purchase or void ("" for anything else): what a void names.
    invoice: str = ""

    @property
    def approved(self) -> bool:
        return self.rc == codes.APPROVED


@dataclass(frozen=True)
class SettlementResult:
    """What a settlement showed and printed."""

    rc: str | None
    display: str
    #: The batch number settled (closed when approved).
    batch_number: str
    #: DE 63 as sent.
    totals: Totals
    #: Whether the settlement went through batch upload (RC 95, 0320s, 0500/960000).
    uploaded: bool = False
    #: How many 0320s were answered 00.
    upload_count: int = 0
    slip: tuple[str, ...] = ()
    timed_out: bool = False
    #: The host answered 95 to 0500/920000 (totals differ), whatever came after.
    mismatch: bool = False

    @property
    def approved(self) -> bool:
        """The host accepted the settlement: the batch is closed."""
        return self.rc == codes.APPROVED


class Edc:
    def __init__(
        self,
        config: EdcConfig,
        link: Link,
        reader: CardReader,
        *,
        clock: Clock | None = None,
        on_screen: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.link = link
        self.reader = reader
        self.clock = clock or SystemClock()
        self.on_screen = on_screen or (lambda _line: None)
        self.state = State.IDLE
        self.stan = 0
        #: The open batch: invoice counter, batch number, what was approved.
        self.batch = Batch()
        self.pending_reversal: Message | None = None
        self._reversal_sent = False
        self._tpk: bytes | None = None
        self._tak: bytes | None = None
        self._processing_code = "000000"
        #: The last financial request sent (for duplicate-transmission scenarios).
        self.last_request: Message | None = None

    # -- plumbing ---------------------------------------------------------------

    def _move(self, new: State) -> None:
        assert new in TRANSITIONS[self.state], f"EDC cannot go {self.state} -> {new}"
        self.state = new

    def _show(self, text: str) -> None:
        self.on_screen(f"[{self.config.tid}] {text}")

    def _next_stan(self) -> str:
        """HOST_SPEC §3: STAN wraps 999999 → 000001."""
        self.stan = self.stan % MAX_STAN + 1
        return f"{self.stan:06d}"

    def _base_fields(self, pcode: str) -> dict[int, str | bytes]:
        now = self.clock.now()
        return {3: pcode, 11: self._next_stan(), 12: now.strftime("%H%M%S"),
                13: now.strftime("%m%d"), 24: self.config.nii[-3:], 41: self.config.tid,
                42: self.config.mid}

    def _send(self, request: Message, *, sign: bool = True) -> Message:
        """Send one request and return the checked response (HOST_SPEC §6 MAC both ways)."""
        macced = mac.requires_mac(request.mti)
        reply = self.link.exchange(self.encode_unit(request, sign=sign), self.config.timeout_s)
        try:
            response = decode_unit(reply).message
        except ProtocolError as exc:
            raise LinkError(f"unreadable response: {exc}") from exc
        if response.opt_text(11) not in (None, request.opt_text(11)):
            raise LinkError("response STAN does not match the request")
        if macced:
            self._check_response_mac(response, reply[TPDU_LEN:])
        return response

    def encode_unit(self, request: Message, *, sign: bool = True) -> bytes:
        """TPDU + message, with DE 64 MAC'd under the TAK when the MTI needs it."""
        if mac.requires_mac(request.mti) and sign and self._tak is not None:
            raw = mac.sign(self._tak, encode(request.with_fields(de64=mac.PLACEHOLDER)))
        else:
            raw = encode(request)
        return Tpdu(self.config.nii, "0000").to_bytes() + raw

    def _check_response_mac(self, response: Message, raw: bytes) -> None:
        """A response MAC that fails, an approval without one, or an unsigned 91
        (HOST_SPEC §6) is no answer at all: the EDC treats it like a time-out (and
        reverses a purchase).  A signed 91 is a decline: nothing was committed."""
        if response.has(64):
            if self._tak is None or not mac.verify(self._tak, raw):
                raise LinkError("response MAC does not verify")
        elif response.opt_text(39) == codes.APPROVED:
            raise LinkError("approval without a MAC")
        elif response.opt_text(39) == codes.HOST_UNAVAILABLE:
            raise LinkError("unsigned 91: taken as no answer")

    # -- administrative -----------------------------------------------------------

    def logon(self) -> TxnResult:
        """0800/920000: take fresh TPK/TAK from DE 62 (HOST_SPEC §6)."""
        request = Message("0800", self._base_fields("920000"))
        try:
            response = self._send(request)
        except NotConnected as exc:
            self._show(f"LOGON GAGAL: {exc}")
            return TxnResult("logon", None, codes.NO_CONNECTION_DISPLAY)
        except LinkError as exc:
            self._show(f"LOGON GAGAL: {exc}")
            return TxnResult("logon", None, codes.TIMEOUT_DISPLAY, timed_out=True)
        rc = response.opt_text(39) or codes.SYSTEM_MALFUNCTION
        if rc == codes.APPROVED:
            try:
                self._tpk, self._tak = parse_key_data(self.config.tmk, response.text(62))
            except (ValueError, ProtocolError) as exc:
                # an approval whose keys are missing or fail their check values (a
                # damaged answer the frame check let through): no keys, no logon
                self._show(f"LOGON GAGAL: {exc}")
                return TxnResult("logon", None, codes.TIMEOUT_DISPLAY, request.text(11))
        self._show(f"LOGON {codes.display_for(rc)}")
        return TxnResult("logon", rc, codes.display_for(rc), request.text(11))

    @property
    def logged_on(self) -> bool:
        """Whether the EDC holds working keys from a logon."""
        return self._tpk is not None and self._tak is not None

    def _forget_keys(self) -> None:
        """RC 63: the host no longer accepts our working keys (another logon rotated
        them, or a logon answer was lost); the next transaction logs on first."""
        self._tpk = self._tak = None

    def ensure_logged_on(self) -> bool:
        """Log on unless working keys are already held."""
        return self._tpk is not None or self.logon().approved

    def echo(self) -> TxnResult:
        request = Message("0800", {k: v for k, v in self._base_fields("990000").items()
                                   if k != 42})
        try:
            rc = self._send(request).opt_text(39) or codes.SYSTEM_MALFUNCTION
        except LinkError:
            return TxnResult("echo", None, codes.TIMEOUT_DISPLAY, timed_out=True)
        return TxnResult("echo", rc, codes.display_for(rc), request.text(11))

    def send_pending_reversal(self) -> bool:
        """Deliver the pending reversal (0400, then 0401 repeats); True when none is left.
        A 91 to it (nothing committed, HOST_SPEC §5) leaves it pending, tried no more now."""
        for _ in range(REVERSAL_ATTEMPTS):
            if self.pending_reversal is None:
                return True
            mti = "0401" if self._reversal_sent else "0400"
            self._reversal_sent = True
            try:
                response = self._send(Message(mti, self.pending_reversal.fields))
            except LinkError as exc:
                self._show(f"REVERSAL {mti} GAGAL: {exc}")
                continue
            self._show(f"REVERSAL STAN {self.pending_reversal.text(11)} "
                       f"RC {response.opt_text(39)}")
            if response.opt_text(39) == codes.SECURITY_VIOLATION:
                # Not accepted (our keys are stale): log on again and repeat it.
                self._forget_keys()
                self.ensure_logged_on()
                continue
            if response.opt_text(39) == codes.HOST_UNAVAILABLE:
                # HOST_SPEC §5: nothing of it was committed; it stays pending (later).
                break
            # Answered: the request it undoes counts as never approved.
            self.batch.reversed(self.pending_reversal.text(11),
                                self.pending_reversal.text(13))
            self.pending_reversal = None
            self._reversal_sent = False
        return self.pending_reversal is None

    # -- card transactions ----------------------------------------------------------

    def balance_inquiry(self, pin: str) -> TxnResult:
        return self._card_transaction("balance", pin, None)

    def purchase(
        self,
        basket: Sequence[BasketLine],
        pin: str,
        *,
        amount_override_sen: int | None = None,
        processing_code: str = "000000",
    ) -> TxnResult:
        """A purchase; the overrides let scenarios send what a faulty EDC would."""
        self._processing_code = processing_code
        return self._card_transaction("purchase", pin, list(basket), amount_override_sen)

    def prepare_purchase(self, basket: Sequence[BasketLine], pin: str) -> bytes:
        """The signed unit of a purchase, built exactly as :meth:`purchase` builds it
        (card read, ARQC, PIN block, MAC) but not sent: load generators build their
        requests before the clock starts.  The EDC must be logged on."""
        assert self.state is State.IDLE and self._tpk is not None, "log on first"
        lines = list(basket)
        amount_sen = sum(line.total_sen for line in lines)
        card, de55 = self._read_card(amount_sen, True)
        self._move(State.PIN_ENTERED)
        request = self._card_request("purchase", card, de55, pin, lines, amount_sen)
        self._finish(TxnResult("purchase", None, "PREPARED"))
        return self.encode_unit(request)

    def resend(self, request: Message, *, sign: bool = True) -> Message:
        """Send an earlier request again (a duplicate transmission), MAC'd under the
        current TAK; ``sign=False`` sends its DE 64 as it stands (tampering tests)."""
        return self._send(request, sign=sign)

    def _card_transaction(
        self, kind: str, pin: str, basket: list[BasketLine] | None,
        amount_override_sen: int | None = None,
    ) -> TxnResult:
        refused = self._prelude(kind)
        if refused is not None:
            return refused
        amount_sen = sum(line.total_sen for line in basket) if basket is not None else 0
        if amount_override_sen is not None:
            amount_sen = amount_override_sen
        try:
            card, de55 = self._read_card(amount_sen, basket is not None)
        except ReaderError as exc:
            self._show(exc.edc_message)
            return self._finish(TxnResult(kind, None, exc.edc_message))
        self._move(State.PIN_ENTERED)
        request = self._card_request(kind, card, de55, pin, basket, amount_sen)
        return self._go_online(kind, request, card, basket)

    def purchase_swiped(
        self, track2: str, entry_mode: str, basket: Sequence[BasketLine], pin: str
    ) -> TxnResult:
        """A purchase read from the magnetic stripe: DE 35 from the swipe, DE 22 ``021``
        (stripe card) or ``801`` (chip card whose chip failed), no DE 23/55 (HOST_SPEC §3)."""
        assert entry_mode in (STRIPE_ENTRY, FALLBACK_ENTRY), f"not a swipe: {entry_mode}"
        self._processing_code = "000000"
        refused = self._prelude("purchase")
        if refused is not None:
            return refused
        pan, _sep, rest = track2.upper().partition("D")
        card = emv.CardData(aid=b"", pan=pan, psn="00", expiry_yymm=rest[:4], track2=track2,
                            cardholder_name="", aip=b"", afl=b"", cdol1=b"")
        self._move(State.CARD_SWIPED)
        self._show(f"KARTU {mask_pan(pan)} (GESEK)")
        self._move(State.PIN_ENTERED)
        lines = list(basket)
        request = self._card_request("purchase", card, None, pin, lines,
                                     sum(line.total_sen for line in lines), entry_mode)
        return self._go_online("purchase", request, card, lines)

    def void(self, invoice: str, pin: str, *, force: bool = False,
             basket: Sequence[BasketLine] | None = None) -> TxnResult:
        """0200/020000: cancel the approved purchase with this invoice (HOST_SPEC §4).

        DE 4 and DE 48 are the original's and the card and PIN are presented again.  An
        invoice the batch holds no approved purchase for is refused here (DATA TRANSAKSI
        TIDAK DITEMUKAN), as is another card than the original's (KARTU TIDAK SESUAI);
        a purchase already voided is sent, for the host to answer 12.  ``force=True``
        sends it anyway (the host must answer 25), with ``basket`` as DE 48/DE 4 when
        the batch does not hold the invoice.
        """
        assert self.state is State.IDLE, f"EDC busy in {self.state}"
        original = self.batch.find_purchase(invoice)
        if original is None and not force:
            self._show(f"VOID INV {invoice}: {VOID_NOT_FOUND_DISPLAY}")
            return self._finish(TxnResult("void", None, VOID_NOT_FOUND_DISPLAY,
                                          invoice=invoice))
        if original is not None:
            de48, amount_sen = original.basket, original.amount_sen
        else:
            assert basket, "a forced void of an invoice the batch lacks needs a basket"
            de48 = encode_basket(list(basket))
            amount_sen = sum(line.total_sen for line in basket)
        refused = self._prelude("void")
        if refused is not None:
            return refused
        self._move(State.VOID_SELECTED)
        self._show(f"VOID INV {invoice} {rupiah(amount_sen)}")
        try:
            card, de55 = self._read_card(amount_sen, False, VOID_TXN_TYPE)
        except ReaderError as exc:
            self._show(exc.edc_message)
            return self._finish(TxnResult("void", None, exc.edc_message, invoice=invoice))
        if original is not None and not force and original.card and \
                card_ref(card.pan) != original.card:
            self._show(WRONG_CARD_DISPLAY)
            return self._finish(TxnResult("void", None, WRONG_CARD_DISPLAY, invoice=invoice))
        self._move(State.PIN_ENTERED)
        fields = self._card_fields(Kind.VOID.processing_code, card, de55, pin)
        fields.update({4: f"{amount_sen:012d}", 48: de48, 62: invoice})
        return self._go_online("void", Message("0200", fields), card, decode_basket(de48))

    def _prelude(self, kind: str) -> TxnResult | None:
        """Before any card transaction: deliver a pending reversal, hold working keys."""
        assert self.state is State.IDLE, f"EDC busy in {self.state}"
        if not self.send_pending_reversal():
            return self._finish(TxnResult(kind, None, codes.display_for(codes.HOST_UNAVAILABLE)))
        if self._tpk is None:
            logon = self.logon()
            if not logon.approved:
                return self._finish(TxnResult(kind, logon.rc, logon.display, logon.stan,
                                              timed_out=logon.timed_out))
        return None

    def _read_card(self, amount_sen: int, purchase: bool,
                   txn_type: int | None = None) -> tuple[emv.CardData, bytes]:
        self._move(State.CARD_INSERTED)
        self.reader.power_on()
        card = emv.read_card(self.reader)
        self._move(State.APP_SELECTED)
        self._move(State.CARD_READ)
        self._show(f"KARTU {mask_pan(card.pan)}")
        if purchase:
            self._move(State.AMOUNT_ENTERED)
        de55 = emv.generate_arqc(
            self.reader, card, amount_sen=amount_sen, txn_date=self.clock.now().date(),
            unpredictable_number=os.urandom(4),
            txn_type=txn_type if txn_type is not None else 0x00 if purchase else 0x31,
        )
        return card, de55

    def _card_request(
        self,
        kind: str,
        card: emv.CardData,
        de55: bytes | None,
        pin: str,
        basket: list[BasketLine] | None,
        amount_sen: int,
        entry_mode: str = CHIP_ENTRY,
    ) -> Message:
        """The 0100/0200 of HOST_SPEC §4; a chip read carries DE 23 and 55, a swipe not.
        A purchase takes the batch's next invoice (DE 62)."""
        pcode = self._processing_code if basket is not None else "310000"
        fields = self._card_fields(pcode, card, de55, pin, entry_mode)
        if basket is None:
            return Message("0100", fields)
        fields.update({4: f"{amount_sen:012d}", 48: encode_basket(basket),
                       62: self.batch.next_invoice()})
        return Message("0200", fields)

    def _card_fields(self, pcode: str, card: emv.CardData, de55: bytes | None, pin: str,
                     entry_mode: str = CHIP_ENTRY) -> dict[int, str | bytes]:
        assert self._tpk is not None
        fields = self._base_fields(pcode)
        fields.update({22: entry_mode, 25: "00", 35: card.track2,
                       52: encrypt_pin_block(self._tpk, pin, card.pan)})
        if de55 is not None:
            fields.update({23: f"{int(card.psn):03d}", 55: de55})
        return fields

    def _go_online(
        self,
        kind: str,
        request: Message,
        card: emv.CardData,
        basket: list[BasketLine] | None,
    ) -> TxnResult:
        self._move(State.ONLINE)
        amount_sen = int(request.opt_text(4) or 0)
        invoice = request.opt_text(62) or ""
        entry: BatchEntry | None = None
        if kind in ("purchase", "void"):
            # Stored before sending: if no answer comes, this is what undoes it.
            self.pending_reversal = Message(
                "0400", {k: v for k, v in request.fields.items() if k not in (52, 64)}
            )
            self._reversal_sent = False
            if request.text(3) == Kind(kind).processing_code:
                entry = self.batch.record(BatchEntry.from_request(
                    Kind(kind), request, pan=card.pan, masked_pan=mask_pan(card.pan)))
        self.last_request = request
        try:
            response = self._send(request)
        except NotConnected as exc:
            # Certainly never sent: nothing to reverse.
            self.pending_reversal = None
            if entry is not None:
                self.batch.discard(entry)
            self._show(f"{codes.NO_CONNECTION_DISPLAY} ({exc})")
            return self._finish(TxnResult(kind, None, codes.NO_CONNECTION_DISPLAY,
                                          request.text(11), amount_sen, invoice=invoice))
        except LinkError as exc:
            # The entry stays as sent; answering its reversal marks it reversed.
            self._show(f"{codes.TIMEOUT_DISPLAY} ({exc})")
            return self._finish(TxnResult(kind, None, codes.TIMEOUT_DISPLAY, request.text(11),
                                          amount_sen, timed_out=True, invoice=invoice))
        self.pending_reversal = None
        rc = response.opt_text(39) or codes.SYSTEM_MALFUNCTION
        if entry is not None:
            if rc == codes.APPROVED:
                self.batch.approve(entry, rrn=response.opt_text(37) or "",
                                   approval_code=response.opt_text(38) or "")
            else:
                self.batch.discard(entry)
        if rc == codes.SECURITY_VIOLATION:
            self._forget_keys()
        balance = decode_balance(response.text(54)) if response.has(54) else None
        display = codes.display_for(rc)
        self._show(f"{display} (RC {rc})")
        receipt: tuple[str, ...] = ()
        if rc == codes.APPROVED:
            self._move(State.RECEIPT)
            receipt = self._receipt(kind, request, response, card, basket, amount_sen, balance)
            for line in receipt:
                self.on_screen(line)
        return self._finish(TxnResult(kind, rc, display, request.text(11), amount_sen,
                                      balance, receipt, invoice=invoice))

    def _receipt(self, kind: str, request: Message, response: Message, card: emv.CardData,
                 basket: list[BasketLine] | None, amount_sen: int,
                 balance: int | None) -> tuple[str, ...]:
        return tuple(purchase_receipt(
            mid=self.config.mid, tid=self.config.tid, when=self.clock.now(), pan=card.pan,
            batch=self.batch.number_text, invoice=request.opt_text(62) or "-",
            stan=request.text(11), rrn=response.opt_text(37) or "-",
            approval_code=response.opt_text(38) or "-", basket=basket or [],
            amount_sen=amount_sen, balance_sen=balance,
            title=_RECEIPT_TITLES[kind], header=self.config.merchant_name,
        ))

    def _finish(self, result: TxnResult) -> TxnResult:
        self.reader.power_off()
        self.state = State.IDLE
        return result

    # -- the day end ------------------------------------------------------------------

    def settle(self) -> SettlementResult:
        """Close the batch (HOST_SPEC §4): the pending reversal first, then 0500/920000
        with DE 60 and DE 63.  00 closes the batch; 95 sends one 0320 per approved,
        unreversed transaction, then 0500/960000, and 00 to that closes it.  Any other
        answer, or none, leaves the batch open."""
        assert self.state is State.IDLE, f"EDC busy in {self.state}"
        number = self.batch.number_text
        refused = self._prelude("settlement")
        if refused is not None:
            self._show(f"SETTLEMENT GAGAL: {refused.display}")
            return SettlementResult(refused.rc, refused.display, number, self.batch.totals(),
                                    timed_out=refused.timed_out)
        totals = self.batch.totals()
        if not totals.fits:
            self._show(f"SETTLEMENT: {BATCH_FULL_DISPLAY}")
            return SettlementResult(None, BATCH_FULL_DISPLAY, number, totals)
        self._move(State.SETTLEMENT)
        self._show(f"SETTLEMENT BATCH {number}")
        rc, display, timed_out = self._settlement_request("920000", totals)
        uploaded, upload_count = False, 0
        mismatch = rc == TOTALS_MISMATCH
        if mismatch:
            self._show(f"{display} (RC {rc})")
            self._move(State.BATCH_UPLOAD)
            rc, display, timed_out, upload_count = self._batch_upload()
            if rc == codes.APPROVED:
                uploaded = True
                self._move(State.SETTLEMENT)
                rc, display, timed_out = self._settlement_request("960000", totals)
        approved = rc == codes.APPROVED
        if approved:
            self.batch.close()
        self._show(f"SETTLEMENT {'BERHASIL' if approved else 'GAGAL'}: {display}"
                   + (f" (RC {rc})" if rc else ""))
        self._move(State.SETTLEMENT_REPORT)
        slip = tuple(settlement_slip(
            merchant_name=self.config.merchant_name, mid=self.config.mid, tid=self.config.tid,
            batch=number, when=self.clock.now(), totals=totals, approved=approved,
            display=display, rc=rc, uploaded=uploaded, upload_count=upload_count))
        for line in slip:
            self.on_screen(line)
        self.state = State.IDLE
        return SettlementResult(rc, display, number, totals, uploaded, upload_count, slip,
                                timed_out, mismatch)

    def _settlement_request(self, pcode: str, totals: Totals) -> tuple[str | None, str, bool]:
        """One 0500: (RC or None, display, timed out)."""
        fields = self._base_fields(pcode)
        fields.update({60: self.batch.number_text, 63: totals.de63()})
        return self._admin_exchange(Message("0500", fields))

    def _batch_upload(self) -> tuple[str | None, str, bool, int]:
        """HOST_SPEC §4: one 0320 per approved, unreversed transaction of the batch
        (DE 3 the original's with the last digit 1, a new STAN, DE 12/13/37/38 the
        original's, DE 60 and 62).  Stops at the first one not answered 00."""
        sent = 0
        for entry in self.batch.approved():
            fields = self._base_fields(entry.upload_processing_code)
            fields.update({4: f"{entry.amount_sen:012d}", 12: entry.local_time,
                           13: entry.local_date, 60: self.batch.number_text,
                           62: entry.invoice})
            if entry.rrn:
                fields[37] = entry.rrn
            if entry.approval_code:
                fields[38] = entry.approval_code
            rc, display, timed_out = self._admin_exchange(Message("0320", fields))
            self._show(f"BATCH UPLOAD INV {entry.invoice} {entry.kind.value.upper()} "
                       f"RC {rc or '-'}")
            if rc != codes.APPROVED:
                return rc, display, timed_out, sent
            sent += 1
        return codes.APPROVED, codes.display_for(codes.APPROVED), False, sent

    def _admin_exchange(self, request: Message) -> tuple[str | None, str, bool]:
        """Send a 0320 or 0500 (MAC'd, response MAC checked): (RC, display, timed out).
        Nothing is reversed: neither moves money."""
        try:
            response = self._send(request)
        except NotConnected as exc:
            self._show(f"{codes.NO_CONNECTION_DISPLAY} ({exc})")
            return None, codes.NO_CONNECTION_DISPLAY, False
        except LinkError as exc:
            self._show(f"{codes.TIMEOUT_DISPLAY} ({exc})")
            return None, codes.TIMEOUT_DISPLAY, True
        rc = response.opt_text(39) or codes.SYSTEM_MALFUNCTION
        if rc == codes.SECURITY_VIOLATION:
            self._forget_keys()
        return rc, codes.display_for(rc), False

    # -- what survives a power cycle -----------------------------------------------------

    def saved_state(self) -> dict[str, Any]:
        """STAN, batch and pending reversal, as a real EDC keeps them in flash (JSON)."""
        return {"stan": self.stan, "invoice": self.batch.last_invoice,
                "batch": self.batch.to_json(),
                "pending_reversal": _message_to_json(self.pending_reversal),
                "reversal_sent": self._reversal_sent}

    def restore_state(self, saved: dict[str, Any]) -> None:
        """The inverse of :meth:`saved_state`; a file of an older simulator holds only
        ``stan`` and ``invoice``."""
        self.stan = int(saved.get("stan", 0))
        if "batch" in saved:
            self.batch = Batch.from_json(saved["batch"])
        else:
            self.batch = Batch(last_invoice=int(saved.get("invoice", 0)))
        self.pending_reversal = _message_from_json(saved.get("pending_reversal"))
        self._reversal_sent = bool(saved.get("reversal_sent", False))


def _message_to_json(message: Message | None) -> dict[str, Any] | None:
    if message is None:
        return None
    return {"mti": message.mti,
            "text": {str(k): v for k, v in message.fields.items() if isinstance(v, str)},
            "binary": {str(k): v.hex() for k, v in message.fields.items()
                       if isinstance(v, bytes)}}


def _message_from_json(data: dict[str, Any] | None) -> Message | None:
    if data is None:
        return None
    fields: dict[int, str | bytes] = {int(k): str(v) for k, v in data["text"].items()}
    fields.update({int(k): bytes.fromhex(v) for k, v in data["binary"].items()})
    return Message(str(data["mti"]), dict(sorted(fields.items())))
