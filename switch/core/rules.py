"""The programme's checks of a card request (HOST_SPEC §4-5), each a pure function of
facts to a :class:`Verdict` (``None``: passed).  :mod:`switch.core.card` runs them in
order, first failure wins: terminal and e-warong (58), logon (63), card known (14),
card status (62), expiry (54), ARQC (63), PIN (55/75), KPM status (57), then for a
purchase: zero amount (13), goods (57), basket sum (13), balance (51).

>>> check_pin(_card(wrong_pin_count=1), pin_ok=False, max_pin_tries=3).rc
'55'
>>> check_pin(_card(wrong_pin_count=2), pin_ok=False, max_pin_tries=3).pin
<PinOutcome.BLOCKED: 'blocked'>
>>> check_card(_card(expiry_yymm="2610"), datetime(2026, 11, 1)).reason
'card expired'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from switch.core.facts import CardFacts, ItemFacts, PinOutcome, TerminalFacts
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine

#: Food categories a BPNT balance may buy (rice, eggs, protein, vegetables, fruit).
ALLOWED_CATEGORIES = frozenset({"rice", "eggs", "protein", "vegetables", "fruit"})



@dataclass(frozen=True)
class Verdict:
    """The outcome of the checks: a response code and what it implies."""

    rc: str
    pin: PinOutcome = PinOutcome.NOT_CHECKED
    amount_sen: int = 0
    reason: str = ""


def check_terminal(terminal: TerminalFacts | None, mid: str) -> Verdict | None:
    """RC 58 for an unknown/inactive terminal or e-warong, or a MID that is not its own."""
    if terminal is None:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="unknown terminal")
    if not terminal.active or not terminal.ewarong_active:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="terminal or e-warong inactive")
    if terminal.mid != mid:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="MID does not own the terminal")
    return None


def check_card(card: CardFacts | None, now: datetime) -> Verdict | None:
    if card is None:
        return Verdict(codes.UNKNOWN_CARD, reason="unknown card")
    if card.status != "active":
        return Verdict(codes.RESTRICTED_CARD, reason=f"card {card.status}")
    if card.expiry_yymm < now.strftime("%y%m"):
        return Verdict(codes.EXPIRED_CARD, reason="card expired")
    return None


def check_pin(card: CardFacts, pin_ok: bool, max_pin_tries: int) -> Verdict | None:
    """RC 55 for a wrong PIN; the ``max_pin_tries``-th consecutive wrong one is 75."""
    if pin_ok:
        return None
    if card.wrong_pin_count + 1 >= max_pin_tries:
        return Verdict(codes.PIN_TRIES_EXCEEDED, PinOutcome.BLOCKED, reason="PIN tries exceeded")
    return Verdict(codes.WRONG_PIN, PinOutcome.WRONG, reason="wrong PIN")


def check_basket(
    amount_sen: int, basket: list[BasketLine], items: Mapping[str, ItemFacts]
) -> Verdict | None:
    if amount_sen <= 0:
        return Verdict(codes.INVALID_AMOUNT, PinOutcome.CORRECT, reason="zero amount")
    for line in basket:
        item = items.get(line.item_code)
        if item is None or not item.allowed or item.category not in ALLOWED_CATEGORIES:
            return Verdict(
                codes.NOT_PERMITTED_KPM, PinOutcome.CORRECT, reason=f"item {line.item_code}"
            )
    if sum(line.total_sen for line in basket) != amount_sen:
        return Verdict(codes.INVALID_AMOUNT, PinOutcome.CORRECT, reason="basket sum != DE 4")
    return None


def check_balance(amount_sen: int, card: CardFacts) -> Verdict:
    """RC 51 when the wallet holds less than the purchase; else approved."""
    if amount_sen > card.balance_sen:
        return Verdict(codes.INSUFFICIENT_BALANCE, PinOutcome.CORRECT, reason="balance")
    return Verdict(codes.APPROVED, PinOutcome.CORRECT, amount_sen=amount_sen)


_EXAMPLE_CARD = CardFacts(card_id=1, status="active", expiry_yymm="2812", pin_offset="0000",
                          wrong_pin_count=0, kpm_active=True, wallet_account_id=1,
                          balance_sen=0)


def _card(**changes: Any) -> CardFacts:
    """A card for the examples above."""
    return replace(_EXAMPLE_CARD, **changes)
