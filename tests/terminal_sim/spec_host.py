"""A host written from HOST_SPEC §4 alone, for testing the EDC's day end in process.

Not the switch: it checks no PIN, ARQC or card, and keeps one wallet per PAN.  It
does what §4 says of void, reversal, batch, settlement and batch upload, signs every
response (§6), and records every request it received so tests can look at the bytes
the EDC sent.  The real switch is tested in test_dayend_e2e.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switch.core.replies import build_response
from switch.protocol import codes
from switch.protocol.message import Message, encode
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import mac
from switch.security.keys import logon_key_data, new_double_length_key
from terminal_sim.batch import Totals

START_SEN = 20_000_000


@dataclass
class Txn:
    pcode: str
    invoice: str
    amount_sen: int
    pan: str
    rrn: str
    voided: bool = False
    reversed: bool = False


@dataclass
class SpecHost:
    tmk: bytes
    tak: bytes | None = None
    wallets: dict[str, int] = field(default_factory=dict)
    #: The open batch: approved financial transactions by (DE 13, DE 11).
    batch: dict[tuple[str, str], Txn] = field(default_factory=dict)
    requests: list[Message] = field(default_factory=list)
    uploads: list[Message] = field(default_factory=list)
    closed_batches: list[str] = field(default_factory=list)
    #: The next answer to this MTI is this RC instead (then the rule applies again).
    force_rc: dict[str, str] = field(default_factory=dict)
    _rrn: int = 0

    def wallet(self, pan: str) -> int:
        return self.wallets.setdefault(pan, START_SEN)

    def process_unit(self, unit: bytes) -> bytes:
        request = decode_unit(unit).message
        self.requests.append(request)
        signed = self.tak is not None and mac.verify(self.tak, unit[TPDU_LEN:])
        if mac.requires_mac(request.mti) and not signed:
            return self._reply(build_response(request, codes.SECURITY_VIOLATION), sign=False)
        forced = self.force_rc.pop(request.mti, None)
        if forced is not None:
            return self._reply(build_response(request, forced, rrn=self._next_rrn()))
        handler = {"0800": self._logon, "0200": self._financial, "0400": self._reversal,
                   "0401": self._reversal, "0320": self._upload, "0500": self._settle}
        return self._reply(handler[request.mti](request), sign=request.mti != "0800")

    def _reply(self, response: Message, *, sign: bool = True) -> bytes:
        if sign and self.tak is not None and mac.requires_mac(response.mti):
            raw = mac.sign(self.tak, encode(response.with_fields(de64=mac.PLACEHOLDER)))
        else:
            raw = encode(response)
        return Tpdu("0000", "0001").to_bytes() + raw

    def _next_rrn(self) -> str:
        self._rrn += 1
        return f"{self._rrn:012d}"

    def _logon(self, request: Message) -> Message:
        tpk, self.tak = new_double_length_key(), new_double_length_key()
        return build_response(request, codes.APPROVED,
                              key_data=logon_key_data(self.tmk, tpk, self.tak))

    def _financial(self, request: Message) -> Message:
        pan = request.text(35).split("D")[0]
        amount = int(request.text(4))
        rrn = self._next_rrn()
        key = (request.text(13), request.text(11))
        invoice = request.text(62)
        if request.text(3) == "020000":
            original = next((t for t in self.batch.values() if t.pcode == "000000"
                             and t.invoice == invoice and not t.reversed), None)
            if original is None:
                return build_response(request, "25", rrn=rrn)
            if original.voided:
                return build_response(request, codes.INVALID_TRANSACTION, rrn=rrn)
            original.voided = True
            self.wallets[pan] = self.wallet(pan) + amount
        else:
            if amount > self.wallet(pan):
                return build_response(request, codes.INSUFFICIENT_BALANCE, rrn=rrn,
                                      balance_sen=self.wallet(pan))
            self.wallets[pan] = self.wallet(pan) - amount
        self.batch[key] = Txn(request.text(3), invoice, amount, pan, rrn)
        return build_response(request, codes.APPROVED, rrn=rrn, approval_code=f"A{rrn[-5:]}",
                              balance_sen=self.wallet(pan))

    def _reversal(self, request: Message) -> Message:
        txn = self.batch.get((request.text(13), request.text(11)))
        if txn is not None and not txn.reversed:
            txn.reversed = True
            if txn.pcode == "020000":
                self.wallets[txn.pan] -= txn.amount_sen
                original = next(t for t in self.batch.values()
                                if t.pcode == "000000" and t.invoice == txn.invoice)
                original.voided = False
            else:
                self.wallets[txn.pan] += txn.amount_sen
        return build_response(request, codes.APPROVED, rrn=self._next_rrn())

    def totals(self) -> Totals:
        live = [t for t in self.batch.values() if not t.reversed]
        purchases = [t for t in live if t.pcode == "000000"]
        voids = [t for t in live if t.pcode == "020000"]
        return Totals(len(purchases), sum(t.amount_sen for t in purchases),
                      len(voids), sum(t.amount_sen for t in voids))

    def _upload(self, request: Message) -> Message:
        self.uploads.append(request)
        return build_response(request, codes.APPROVED, rrn=self._next_rrn())

    def _settle(self, request: Message) -> Message:
        if request.text(3) == "920000" and Totals.parse(request.text(63)) != self.totals():
            return build_response(request, "95", rrn=self._next_rrn())
        self.closed_batches.append(request.text(60))
        self.batch = {}
        return build_response(request, codes.APPROVED, rrn=self._next_rrn())
