"""The authorization decision for card requests (HOST_SPEC §4-5).  Pure: no I/O.

Order of checks, first failure wins: terminal and e-warong (58), logon (63),
card known (14), card status (62), expiry (54), ARQC (63), PIN (55/75), KPM status (57),
then for a purchase: zero amount (13), goods (57), basket sum (13), balance (51).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from switch.authorize.facts import CardFacts, Decision, ItemFacts, PinOutcome, TerminalFacts
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine

#: Food categories a BPNT balance may buy (rice, eggs, protein, vegetables, fruit).
ALLOWED_CATEGORIES = frozenset({"rice", "eggs", "protein", "vegetables", "fruit"})

PinCheck = Callable[[bytes], bool]


def check_terminal(terminal: TerminalFacts | None, mid: str) -> Decision | None:
    """RC 58 for an unknown/inactive terminal or e-warong, or a MID that is not its own."""
    if terminal is None:
        return Decision(codes.NOT_PERMITTED_TERMINAL, reason="unknown terminal")
    if not terminal.active or not terminal.ewarong_active:
        return Decision(codes.NOT_PERMITTED_TERMINAL, reason="terminal or e-warong inactive")
    if terminal.mid != mid:
        return Decision(codes.NOT_PERMITTED_TERMINAL, reason="MID does not own the terminal")
    return None


def check_card(card: CardFacts | None, now: datetime) -> Decision | None:
    if card is None:
        return Decision(codes.UNKNOWN_CARD, reason="unknown card")
    if card.status != "active":
        return Decision(codes.RESTRICTED_CARD, reason=f"card {card.status}")
    if card.expiry_yymm < now.strftime("%y%m"):
        return Decision(codes.EXPIRED_CARD, reason="card expired")
    return None


def check_pin(card: CardFacts, pin_ok: bool, max_pin_tries: int) -> Decision | None:
    """RC 55 for a wrong PIN; the ``max_pin_tries``-th consecutive wrong one is 75."""
    if pin_ok:
        return None
    if card.wrong_pin_count + 1 >= max_pin_tries:
        return Decision(codes.PIN_TRIES_EXCEEDED, PinOutcome.BLOCKED, reason="PIN tries exceeded")
    return Decision(codes.WRONG_PIN, PinOutcome.WRONG, reason="wrong PIN")


def check_basket(
    amount_sen: int, basket: list[BasketLine], items: Mapping[str, ItemFacts]
) -> Decision | None:
    if amount_sen <= 0:
        return Decision(codes.INVALID_AMOUNT, PinOutcome.CORRECT, reason="zero amount")
    for line in basket:
        item = items.get(line.item_code)
        if item is None or not item.allowed or item.category not in ALLOWED_CATEGORIES:
            return Decision(
                codes.NOT_PERMITTED_KPM, PinOutcome.CORRECT, reason=f"item {line.item_code}"
            )
    if sum(line.total_sen for line in basket) != amount_sen:
        return Decision(codes.INVALID_AMOUNT, PinOutcome.CORRECT, reason="basket sum != DE 4")
    return None


def decide(
    *,
    terminal: TerminalFacts | None,
    mid: str,
    card: CardFacts | None,
    now: datetime,
    pin_ok: Callable[[TerminalFacts, CardFacts], bool],
    arqc_problem: Callable[[CardFacts], str | None],
    max_pin_tries: int,
    purchase: tuple[int, list[BasketLine], Mapping[str, ItemFacts]] | None,
) -> Decision:
    """Decide a balance inquiry (``purchase=None``) or a purchase.

    ``pin_ok`` is called only once terminal and card passed their checks, so a
    request for an unknown card never touches the PIN try counter.
    """
    refused = check_terminal(terminal, mid)
    if refused:
        return refused
    assert terminal is not None
    if terminal.tpk is None:
        return Decision(codes.SECURITY_VIOLATION, reason="terminal has not logged on")
    refused = check_card(card, now)
    if refused:
        return refused
    assert card is not None
    if problem := arqc_problem(card):
        return Decision(codes.SECURITY_VIOLATION, reason=problem)
    refused = check_pin(card, pin_ok(terminal, card), max_pin_tries)
    if refused:
        return refused
    if not card.kpm_active:
        return Decision(codes.NOT_PERMITTED_KPM, PinOutcome.CORRECT, reason="KPM inactive")
    if purchase is None:
        return Decision(codes.APPROVED, PinOutcome.CORRECT)
    amount_sen, basket, items = purchase
    refused = check_basket(amount_sen, basket, items)
    if refused:
        return refused
    if amount_sen > card.balance_sen:
        return Decision(codes.INSUFFICIENT_BALANCE, PinOutcome.CORRECT, reason="balance")
    return Decision(codes.APPROVED, PinOutcome.CORRECT, amount_sen=amount_sen)
