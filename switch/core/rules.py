"""The programme's checks of a card request (HOST_SPEC §4-5, docs/RULES.md), each a
pure function of facts to a :class:`Verdict` (``None``: passed) or, for the rules that
may only flag, a :class:`Hit`.  :mod:`switch.core.card` runs them in order, first
failure wins: terminal and e-warong (58), logon (63), card known (14), card status and
dormancy (62), expiry (54), ARQC (63), PIN (55/75), KPM status (57), opening hours and
velocity (65), then for a purchase: zoning (58), zero amount (13), goods (57), basket
sum (13), reference price (13), stock (ST), balance (51).

>>> check_pin(_card(wrong_pin_count=1), pin_ok=False, max_pin_tries=3).rc
'55'
>>> check_pin(_card(wrong_pin_count=2), pin_ok=False, max_pin_tries=3).pin
<PinOutcome.BLOCKED: 'blocked'>
>>> check_card(_card(expiry_yymm="2610"), datetime(2026, 11, 1)).reason
'card expired'
>>> from datetime import UTC
>>> now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
>>> check_card(_card(active_since=now - timedelta(days=90)), now, 90).card_status
'dormant'
>>> off_hours_hit(EwarongRules(open_hhmm="0700", close_hhmm="1700"), now) is None  # 10:00
True
>>> off_hours_hit(EwarongRules(open_hhmm="1100", close_hhmm="1700"), now).detail
{'local_time': '1000', 'open': '1100', 'close': '1700'}
>>> reference_price("BRS005", "327301", {("BRS005", "32"): 7_000_000,
...                                       ("BRS005", ""): 6_500_000})
7000000
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any

from switch.core.facts import CardFacts, EwarongRules, ItemFacts, PinOutcome, TerminalFacts, utc
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
    #: The card's status the decision sets (a card found dormant: ``dormant``).
    card_status: str | None = None


@dataclass(frozen=True)
class Hit:
    """A rule that matched: what it would decline with, and what the alert records."""

    rule: str
    rc: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    card_ids: tuple[int, ...] = ()


def check_terminal(terminal: TerminalFacts | None, mid: str) -> Verdict | None:
    """RC 58 for an unknown/inactive terminal or e-warong, or a MID that is not its own."""
    if terminal is None:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="unknown terminal")
    if not terminal.active or not terminal.ewarong_active:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="terminal or e-warong inactive")
    if terminal.mid != mid:
        return Verdict(codes.NOT_PERMITTED_TERMINAL, reason="MID does not own the terminal")
    return None


def check_card(card: CardFacts | None, now: datetime,
               dormancy_days: int | None = None) -> Verdict | None:
    """14 unknown, 62 not active or found dormant now (FAILURES F5), 54 expired."""
    if card is None:
        return Verdict(codes.UNKNOWN_CARD, reason="unknown card")
    if card.status != "active":
        return Verdict(codes.RESTRICTED_CARD, reason=f"card {card.status}")
    if dormancy_days is not None:
        active_since = card.active_since
        # whole days unused (``timedelta.days`` floors: the same as >= N days)
        unused_days = (utc(now) - active_since).days if active_since is not None else -1
        if unused_days >= dormancy_days:
            return Verdict(codes.RESTRICTED_CARD,
                           reason=f"card dormant: unused {unused_days} days",
                           card_status="dormant")
    if card.expiry_yymm < now.strftime("%y%m"):  # the local month (WIB)
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


def off_hours_hit(ewarong: EwarongRules, now: datetime) -> Hit | None:
    """The e-warong's local time outside ``[open, close)`` (a close before the open
    spans midnight); no hours: always open."""
    if ewarong.open_hhmm is None or ewarong.close_hhmm is None:
        return None
    local = (utc(now) + timedelta(minutes=ewarong.utc_offset_minutes)).strftime("%H%M")
    opened, closed = ewarong.open_hhmm, ewarong.close_hhmm
    inside = (opened <= local < closed) if opened <= closed else (
        local >= opened or local < closed)
    if inside:
        return None
    return Hit("off_hours", codes.LIMIT_EXCEEDED, f"outside opening hours {opened}-{closed}",
               {"local_time": local, "open": opened, "close": closed})


def velocity_hit(window: dict[int, datetime], card_id: int, now: datetime,
                 max_cards: int, minutes: int, count: int | None = None, *,
                 since: datetime | None = None) -> Hit | None:
    """More than ``max_cards`` distinct cards at the terminal within ``minutes``, this
    one included; a card already in the window is not a new one.  ``window``: cards
    seen and when, oldest first (the store and :class:`BatchFacts` keep that order);
    ``count``: the distinct cards of the window when ``window`` holds only some of
    them (the store reads the most recent ones); ``since``: the window's start
    (``now - minutes``), when the caller has it already.  A hit names the cards that
    make it: this one and the ``max_cards`` most recent others of the window."""
    if since is None:
        since = utc(now) - timedelta(minutes=minutes)
    last = window.get(card_id)
    if last is not None and last >= since:
        return None
    if count is None:
        count = sum(1 for at in window.values() if at >= since)
    total = count + 1
    if total <= max_cards:
        return None
    newest = list(islice(reversed(window), max_cards))
    if card_id in newest or min(map(window.__getitem__, newest), default=since) < since:
        # some of the most recent are out of the window: walk it, newest first
        newest = []
        for card, at in reversed(window.items()):
            if at >= since and card != card_id:
                newest.append(card)
                if len(newest) == max_cards:
                    break
    newest.append(card_id)
    newest.sort()
    return Hit("velocity", codes.LIMIT_EXCEEDED,
               f"{total} cards in {minutes} min at one terminal",
               {"cards": total, "window_minutes": minutes, "max_cards": max_cards},
               tuple(newest))


def zoning_hit(zone: str, zones: tuple[str, ...]) -> Hit | None:
    """A KPM whose zone starts with none of the e-warong's zones (none: all served)."""
    if not zones or any(zone.startswith(prefix) for prefix in zones):
        return None
    return Hit("zoning", codes.NOT_PERMITTED_TERMINAL, f"KPM zone {zone} not served here",
               {"zone": zone, "zones": list(zones)})


@lru_cache(maxsize=4096)  # one entry per e-warong region: asked on every purchase
def region_prefixes(region: str | None) -> tuple[str, ...]:
    """The regions whose reference price applies, longest first (6, 4, 2 digits, then
    ``""`` national).

    >>> region_prefixes("327301"), region_prefixes("32"), region_prefixes(None)
    (('327301', '3273', '32', ''), ('32', ''), ('',))
    """
    region = region or ""
    return (*(region[:n] for n in (6, 4, 2) if len(region) >= n), "")


def reference_price(item_code: str, region: str,
                    prices: Mapping[tuple[str, str], int]) -> int | None:
    """The reference for the longest prefix (6, 4, 2 digits, then national) of
    ``region`` that has one."""
    for prefix in region_prefixes(region):
        found = prices.get((item_code, prefix))
        if found is not None:
            return found
    return None


def price_hits(basket: list[BasketLine], region: str, prices: Mapping[tuple[str, str], int],
               percent: int) -> list[Hit]:
    """Each line priced more than ``percent`` above its reference (integer arithmetic:
    ``unit × 100 > reference × (100 + percent)``)."""
    hits: list[Hit] = []
    if not prices:
        return hits
    for line in basket:
        reference = reference_price(line.item_code, region, prices)
        if reference is not None and line.unit_price_sen * 100 > reference * (100 + percent):
            over = (line.unit_price_sen - reference) * 100 // reference
            hits.append(Hit("over_price", codes.INVALID_AMOUNT,
                            f"{line.item_code} {over}% over the reference price",
                            {"item": line.item_code, "unit_price_sen": line.unit_price_sen,
                             "reference_sen": reference, "percent_over": over}))
    return hits


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
