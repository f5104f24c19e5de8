"""Chip first, then the stripe: technical fallback (DE 22 ``801``) and stripe-only cards
(DE 22 ``021``), HOST_SPEC §3-4.

The rules an Indonesian EDC keeps (as EMV's fallback rules):

- a card in the chip slot is read by the chip (`Edc.purchase`);
- when the chip cannot be read (KARTU TIDAK TERBACA: mute, ``6F00``, bad ATR, bad TLV,
  time-out) and the swiped stripe's service code says "chip card" (first digit 2 or 6),
  the EDC sends the stripe's track 2 with DE 22 ``801`` and no DE 55;
- a stripe-only card (service code 1xx) swiped goes out with DE 22 ``021``;
- a chip card swiped without a failed chip read first is told GUNAKAN CHIP.

`Edc` has no stripe path yet, so this module drives its helpers (``_card_request``,
``_go_online``); the hook `Edc` should grow is ``purchase_swiped(track2, entry_mode, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EDC_CARD_UNREADABLE, NoCardError
from terminal_sim.edc import FALLBACK_ENTRY, STRIPE_ENTRY, Edc, TxnResult

__all__ = [
    "EDC_SWIPE_CARD",
    "EDC_USE_CHIP",
    "ENTRY_FALLBACK",
    "ENTRY_STRIPE",
    "StripeReader",
    "purchase_with_fallback",
]

EDC_USE_CHIP: Final[str] = "GUNAKAN CHIP"
EDC_SWIPE_CARD: Final[str] = "GESEK KARTU"
ENTRY_STRIPE: Final[str] = STRIPE_ENTRY
ENTRY_FALLBACK: Final[str] = FALLBACK_ENTRY
_CHIP_SERVICE_CODES: Final[frozenset[str]] = frozenset({"2", "6"})


class StripeReader:
    """The EDC's magnetic stripe head: a test (or `card-emu`) loads the track 2 of the
    card about to be swiped; `swipe` reads it once."""

    def __init__(self) -> None:
        self._track2: str | None = None

    def load(self, track2: str | None) -> None:
        self._track2 = track2

    def swipe(self) -> str:
        track2, self._track2 = self._track2, None
        if track2 is None:
            raise NoCardError("nothing swiped")
        return track2


def _service_code(track2: str) -> str:
    _pan, _sep, rest = track2.upper().partition("D")
    return rest[4:7]


def purchase_with_fallback(edc: Edc, stripe: StripeReader, basket: Sequence[BasketLine],
                           pin: str) -> TxnResult:
    """One purchase: the chip if a card is in the slot, else (or after a chip that could
    not be read) the stripe."""
    chip_failed = False
    if edc.reader.card_present():
        result = edc.purchase(basket, pin)
        if result.rc is not None or result.display != EDC_CARD_UNREADABLE:
            return result
        chip_failed = True
        edc.on_screen(f"[{edc.config.tid}] {EDC_SWIPE_CARD}")
    try:
        track2 = stripe.swipe()
    except NoCardError as exc:
        return TxnResult("purchase", None, exc.edc_message)
    chip_card = _service_code(track2)[:1] in _CHIP_SERVICE_CODES
    if chip_card and not chip_failed:
        return TxnResult("purchase", None, EDC_USE_CHIP)
    entry_mode = ENTRY_FALLBACK if chip_card else ENTRY_STRIPE
    return purchase_swiped(edc, track2, entry_mode, basket, pin)


def purchase_swiped(edc: Edc, track2: str, entry_mode: str, basket: Sequence[BasketLine],
                    pin: str) -> TxnResult:
    """A 0200 from the stripe: DE 35 track 2, DE 22 ``entry_mode``, no DE 23 or 55."""
    return edc.purchase_swiped(track2, entry_mode, basket, pin)
