"""Named scenarios: one per decline and failure of the foundation (issue 2,
FAILURES.md F2, F3, F5, F7, F8, F13), and the day end (void, settlement, batch
upload).  Each returns steps with what the EDC showed and what was expected, so
``make run`` and ``edc-sim scenario NAME`` show the same thing a developer would
see on a real EDC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from terminal_sim.batch import MAX_BATCH_NUMBER, Totals
from terminal_sim.edc import (
    ORIGINAL_NOT_FOUND,
    VOID_NOT_FOUND_DISPLAY,
    Edc,
    SettlementResult,
    TxnResult,
)
from terminal_sim.world import ALLOWED_ITEMS, FORBIDDEN_ITEMS, SimWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Step:
    what: str
    expected: str
    got: str
    display: str
    receipt: tuple[str, ...] = ()
    #: Amount of a purchase the EDC saw approved (0 for anything else).
    approved_purchase_sen: int = 0
    #: Amount of a void the EDC saw approved (0 for anything else).
    approved_void_sen: int = 0

    @property
    def ok(self) -> bool:
        return self.expected == self.got


def _rc(result: TxnResult) -> str:
    return result.rc or (TIMEOUT if result.timed_out else "none")


class Scenarios:
    """Runs scenarios on a :class:`SimWorld`; spare cards come from the reserve."""

    def __init__(self, sim: SimWorld) -> None:
        self.sim = sim
        self.terminal = next(t for t in sim.world.terminals if t.label == "ok")

    def _edc(self) -> Edc:
        return self.sim.edc(self.terminal)

    def _fresh_card(self, edc: Edc) -> str:
        card = self.sim.take_spare_card()
        self.sim.insert(edc, card)
        return card.pin

    def _insert_labelled(self, edc: Edc, label: str) -> str:
        card = self.sim.world.cards_labelled(label)[0]
        self.sim.insert(edc, card)
        return card.pin

    def _step(self, what: str, expected: str, result: TxnResult) -> Step:
        approved_sen = result.amount_sen if result.approved and result.kind == "purchase" else 0
        void_sen = result.amount_sen if result.approved and result.kind == "void" else 0
        return Step(what, expected, _rc(result), result.display, result.receipt, approved_sen,
                    void_sen)

    @staticmethod
    def _settled(what: str, expected: str, result: SettlementResult) -> Step:
        got = result.rc or (TIMEOUT if result.timed_out else "none")
        return Step(what, expected, got, result.display, result.slip)

    @staticmethod
    def _check(what: str, holds: bool, detail: str = "") -> Step:
        return Step(what, "yes", "yes" if holds else "no", detail)

    def _balance(self, edc: Edc, pin: str) -> int | None:
        return edc.balance_inquiry(pin).balance_sen

    # -- the scenarios ---------------------------------------------------------------

    def approved_purchase(self) -> list[Step]:
        edc = self._edc()
        pin = self._fresh_card(edc)
        return [self._step("purchase rice and eggs", codes.APPROVED,
                           edc.purchase([RICE, EGGS], pin)),
                self._step("balance inquiry", codes.APPROVED, edc.balance_inquiry(pin))]

    def card_declines(self) -> list[Step]:
        edc = self._edc()
        steps = []
        for label, rc in [("unknown", codes.UNKNOWN_CARD), ("expired", codes.EXPIRED_CARD),
                          ("blocked", codes.RESTRICTED_CARD), ("lost", codes.RESTRICTED_CARD),
                          ("stolen", codes.RESTRICTED_CARD), ("dormant", codes.RESTRICTED_CARD),
                          ("kpm_inactive", codes.NOT_PERMITTED_KPM)]:
            pin = self._insert_labelled(edc, label)
            steps.append(self._step(f"{label} card", rc, edc.purchase([RICE], pin)))
        return steps

    def goods_and_amount_declines(self) -> list[Step]:
        edc = self._edc()
        pin = self._fresh_card(edc)
        forbidden = BasketLine(FORBIDDEN_ITEMS[0], 1, 3_600_000)
        return [
            self._step("item outside food categories", codes.NOT_PERMITTED_KPM,
                       edc.purchase([RICE, forbidden], pin)),
            self._step("cash-out processing code", codes.NOT_PERMITTED_KPM,
                       edc.purchase([RICE], pin, processing_code="011000")),
            self._step("basket sum differs from DE 4", codes.INVALID_AMOUNT,
                       edc.purchase([RICE], pin, amount_override_sen=RICE.total_sen + 100)),
            self._step("zero amount", codes.INVALID_AMOUNT,
                       edc.purchase([BasketLine(ALLOWED_ITEMS[0], 1, 0)], pin)),
            self._step("basket over the balance", codes.INSUFFICIENT_BALANCE,
                       edc.purchase([BasketLine("BRS010", 20, 14_000_000)], pin)),
        ]

    def unsupported_message(self) -> list[Step]:
        """FAILURES F7: a terminal not upgraded sends a code this host does not serve."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        return [self._step("unsupported processing code 380000", codes.INVALID_TRANSACTION,
                           edc.purchase([RICE], pin, processing_code="380000"))]

    def terminal_declines(self) -> list[Step]:
        steps = []
        for label in ("unknown", "inactive", "ewarong_inactive"):
            terminal = self.sim.world.terminal_labelled(label)
            edc = self.sim.edc(terminal)
            pin = self._fresh_card(edc)
            steps.append(self._step(f"{label} terminal", codes.NOT_PERMITTED_TERMINAL,
                                    edc.purchase([RICE], pin)))
        return steps

    def wrong_pin_three_times(self) -> list[Step]:
        """FAILURES F5: 55, 55, 75, then the card is blocked (62) even with the right PIN."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        wrong = f"{(int(pin) + 1) % 10**6:06d}"
        steps = [self._step(f"wrong PIN #{n}", rc, edc.purchase([RICE], wrong))
                 for n, rc in [(1, codes.WRONG_PIN), (2, codes.WRONG_PIN),
                               (3, codes.PIN_TRIES_EXCEEDED)]]
        steps.append(self._step("right PIN on the blocked card", codes.RESTRICTED_CARD,
                                edc.purchase([RICE], pin)))
        return steps

    def duplicate_transmission(self) -> list[Step]:
        """FAILURES F2: the same request twice debits once; changed content is 94."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        before = self._balance(edc, pin)
        first = edc.purchase([RICE], pin)
        assert edc.last_request is not None
        again = edc.resend(edc.last_request)
        changed = edc.resend(edc.last_request.with_fields(de4=f"{RICE.total_sen + 100:012d}"))
        after = self._balance(edc, pin)
        debited_once = before is not None and after == before - RICE.total_sen
        same = again.opt_text(37) == first_rrn(edc, first)
        return [
            self._step("purchase", codes.APPROVED, first),
            Step("same request again: same response", "same", "same" if same else "differs",
                 codes.display_for(again.opt_text(39) or "")),
            Step("same key, different amount", codes.DUPLICATE_DIFFERENT,
                 changed.opt_text(39) or "none", codes.display_for(changed.opt_text(39) or "")),
            Step("balance debited exactly once", "yes", "yes" if debited_once else "no",
                 f"before {before} after {after}"),
        ]

    def timeout_then_reversal(self) -> list[Step]:
        """FAILURES F13: the host debits, the response is lost, the reversal restores."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        before = self._balance(edc, pin)  # also logs on, so the fault hits the purchase
        self.sim.faults(self.terminal).drop_responses = 1
        lost = edc.purchase([RICE], pin)
        pending = edc.pending_reversal is not None
        after = self._balance(edc, pin)  # sends the pending reversal first
        return [
            self._step("purchase whose response is lost", TIMEOUT, lost),
            Step("reversal pending on the EDC", "yes", "yes" if pending else "no", ""),
            Step("balance restored exactly", "yes",
                 "yes" if before is not None and after == before else "no",
                 f"before {before} after {after}"),
        ]

    def reversal_before_original(self) -> list[Step]:
        """HOST_SPEC §4: a reversal for an unknown original is remembered; the late
        original is then declined 05 and moves no money."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        before = self._balance(edc, pin)  # also logs on, so the fault hits the purchase
        self.sim.faults(self.terminal).drop_requests = 1
        lost = edc.purchase([RICE], pin)
        late = edc.last_request
        assert late is not None
        edc.send_pending_reversal()
        answer = edc.resend(late)
        after = self._balance(edc, pin)
        return [
            self._step("purchase that never reached the host", TIMEOUT, lost),
            Step("late original after its reversal", codes.DO_NOT_HONOUR,
                 answer.opt_text(39) or "none", codes.display_for(answer.opt_text(39) or "")),
            Step("balance unchanged", "yes",
                 "yes" if before is not None and after == before else "no",
                 f"before {before} after {after}"),
        ]

    # -- the day end -------------------------------------------------------------------

    def void(self) -> list[Step]:
        """HOST_SPEC §4 void: the amount comes back exactly once; a second void is 12;
        an invoice the terminal's batch does not hold is refused by the EDC, and 25
        from the host when forced through."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        before = self._balance(edc, pin)
        bought = edc.purchase([RICE, EGGS], pin)
        after_purchase = self._balance(edc, pin)
        voided = edc.void(bought.invoice, pin)
        after_void = self._balance(edc, pin)
        again = edc.void(bought.invoice, pin)
        unknown = unheld_invoice(edc)
        local = edc.void(unknown, pin)
        forced = edc.void(unknown, pin, force=True, basket=[RICE])
        final = self._balance(edc, pin)
        amount = RICE.total_sen + EGGS.total_sen
        return [
            self._step("purchase rice and eggs", codes.APPROVED, bought),
            self._check("balance debited by the basket", before is not None
                        and after_purchase == before - amount,
                        f"before {before} after {after_purchase}"),
            self._step(f"void invoice {bought.invoice}", codes.APPROVED, voided),
            self._check("balance back exactly", after_void == before,
                        f"before {before} after void {after_void}"),
            self._step("void the same invoice again", codes.INVALID_TRANSACTION, again),
            Step(f"void invoice {unknown} the EDC does not hold", "refused",
                 "refused" if local.rc is None and local.display == VOID_NOT_FOUND_DISPLAY
                 else _rc(local), local.display),
            self._step(f"forced void of invoice {unknown}", ORIGINAL_NOT_FOUND, forced),
            self._check("balance unchanged by the refused voids", final == before,
                        f"before {before} after {final}"),
        ]

    def settlement(self) -> list[Step]:
        """HOST_SPEC §4 settlement: totals agree → 00, the batch closes and the next
        number starts empty; settling the empty batch is 00 with zero totals."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        bought = [edc.purchase(basket, pin) for basket in ([RICE], [EGGS], [RICE, EGGS])]
        steps = [self._step(f"purchase {n}", codes.APPROVED, result)
                 for n, result in enumerate(bought, 1)]
        steps.append(self._step(f"void invoice {bought[1].invoice}", codes.APPROVED,
                                edc.void(bought[1].invoice, pin)))
        before = self._balance(edc, pin)
        number = edc.batch.number
        totals = edc.batch.totals()
        first = edc.settle()
        after = self._balance(edc, pin)
        following = f"{number % MAX_BATCH_NUMBER + 1:06d}"
        second = edc.settle()
        return steps + [
            self._settled(f"settle batch {first.batch_number} "
                          f"({totals.purchase_count} purchases, {totals.void_count} voids)",
                          codes.APPROVED, first),
            self._check("no batch upload", not first.uploaded),
            self._check(f"batch number now {following}", second.batch_number == following,
                        f"settled {first.batch_number}, then {second.batch_number}"),
            self._check("settlement moves no money", before is not None and after == before,
                        f"before {before} after {after}"),
            self._settled(f"settle the empty batch {second.batch_number}", codes.APPROVED,
                          second),
            self._check("empty batch has zero totals", second.totals == Totals(),
                        second.totals.de63()),
        ]

    def settlement_mismatch(self) -> list[Step]:
        """HOST_SPEC §4: a terminal that lost a record of its batch gets 95, uploads
        what it holds (0320s), and 0500/960000 closes the batch; no money moves."""
        edc = self._edc()
        pin = self._fresh_card(edc)
        first = edc.purchase([RICE], pin)
        lost = edc.purchase([EGGS], pin)
        edc.batch.forget(lost.invoice)
        held = len(edc.batch.approved())
        before = self._balance(edc, pin)
        number = edc.batch.number
        result = edc.settle()
        after = self._balance(edc, pin)
        return [
            self._step("purchase rice", codes.APPROVED, first),
            self._step(f"purchase eggs (invoice {lost.invoice}, then lost)", codes.APPROVED,
                       lost),
            self._check("totals differ: 95, batch upload", result.uploaded, result.display),
            Step("one 0320 per transaction held", str(held), str(result.upload_count), ""),
            self._settled("settlement after upload (960000)", codes.APPROVED, result),
            self._check("batch closed", result.approved and edc.batch.number != number
                        and not edc.batch.entries, f"now batch {edc.batch.number_text}"),
            self._check("upload moves no money", before is not None and after == before,
                        f"before {before} after {after}"),
        ]


def unheld_invoice(edc: Edc) -> str:
    """An invoice the terminal's batch has not given out (the host holds none either)."""
    return f"{(edc.batch.last_invoice + 500) % 999_999 + 1:06d}"


def first_rrn(edc: Edc, result: TxnResult) -> str | None:
    """The RRN printed on the receipt of an approved result."""
    for line in result.receipt:
        if line.startswith("RRN "):
            return line.split()[1]
    return None


SCENARIOS: dict[str, Callable[[Scenarios], list[Step]]] = {
    "approved-purchase": Scenarios.approved_purchase,
    "card-declines": Scenarios.card_declines,
    "goods-and-amount-declines": Scenarios.goods_and_amount_declines,
    "terminal-declines": Scenarios.terminal_declines,
    "unsupported-message": Scenarios.unsupported_message,
    "wrong-pin-3x": Scenarios.wrong_pin_three_times,
    "duplicate": Scenarios.duplicate_transmission,
    "timeout-then-reversal": Scenarios.timeout_then_reversal,
    "reversal-before-original": Scenarios.reversal_before_original,
    "void": Scenarios.void,
    "settlement": Scenarios.settlement,
    "settlement-mismatch": Scenarios.settlement_mismatch,
}
