"""Card readers of the simulated EDC: the protocol, an in-process reader, the errors.

A reader moves APDUs (EMV Book 1 §9) between the terminal kernel
(`terminal_sim.emv`) and a card: here the emulated `KksCard`; a PC/SC reader
(pyscard) implements the same `CardReader` protocol.

Every error carries ``edc_message``, the text an Indonesian EDC shows on its
screen for it.
"""

from __future__ import annotations

from typing import Final, Protocol

from card_emulator.card import KksCard

__all__ = [
    "CardReader",
    "CardRemovedError",
    "CardDeclinedError",
    "CardUnreadableError",
    "EDC_CARD_DECLINED",
    "EDC_CARD_REMOVED",
    "EDC_CARD_UNREADABLE",
    "EDC_CHIP_ERROR",
    "EDC_INSERT_CARD",
    "EDC_READER_ERROR",
    "EmulatedReader",
    "NoCardError",
    "ReaderError",
    "ReaderUnavailableError",
]

EDC_INSERT_CARD: Final[str] = "MASUKKAN KARTU"
EDC_CARD_REMOVED: Final[str] = "KARTU DICABUT"
EDC_CARD_UNREADABLE: Final[str] = "KARTU TIDAK TERBACA"
EDC_CHIP_ERROR: Final[str] = "CHIP ERROR / GUNAKAN KARTU LAIN"
EDC_READER_ERROR: Final[str] = "CARD READER ERROR"

#: Short APDU limits (ISO 7816-4 §5.1): 5-byte header + 255 data + Le.
_MAX_APDU_BYTES: Final[int] = 261


#: What the EDC shows when the card declines offline.
EDC_CARD_DECLINED = "DITOLAK OLEH KARTU"


class ReaderError(Exception):
    """Base of reader and card errors; ``edc_message`` is what the EDC displays."""

    default_edc_message: str = EDC_CARD_UNREADABLE

    def __init__(self, detail: str = "", *, edc_message: str | None = None) -> None:
        self.edc_message = edc_message or self.default_edc_message
        super().__init__(f"{self.edc_message}: {detail}" if detail else self.edc_message)


class NoCardError(ReaderError):
    """No card in the slot."""

    default_edc_message = EDC_INSERT_CARD


class CardRemovedError(ReaderError):
    """The card left the slot during the transaction."""

    default_edc_message = EDC_CARD_REMOVED


class CardUnreadableError(ReaderError):
    """The card answered, but not as an EMV KKS card should (bad SW, bad TLV, mute)."""

    default_edc_message = EDC_CARD_UNREADABLE


class CardDeclinedError(ReaderError):
    """The card itself declined (GENERATE AC returned an AAC, e.g. its PIN try counter
    is exhausted): nothing goes online (EMV Book 3 §10.8)."""

    default_edc_message = EDC_CARD_DECLINED


class ReaderUnavailableError(ReaderError):
    """The reader itself is gone or broken (PC/SC service down, unplugged)."""

    default_edc_message = EDC_READER_ERROR


class CardReader(Protocol):
    """What the terminal kernel needs from a contact chip reader."""

    def card_present(self) -> bool:
        """Whether a card sits in the slot."""
        ...

    def power_on(self) -> bytes:
        """Cold-reset the card and return its ATR; `NoCardError` if the slot is empty."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU, return ``data || SW1 SW2``."""
        ...

    def power_off(self) -> None:
        """Deactivate the contacts (ISO 7816-3 §6.4); harmless without a card."""
        ...


class EmulatedReader:
    """An in-process reader holding a `KksCard`; tests insert, remove and swap cards."""

    def __init__(self, card: KksCard | None = None) -> None:
        self._card = card
        self._powered = False

    @property
    def card(self) -> KksCard | None:
        """The card in the slot, if any."""
        return self._card

    def insert(self, card: KksCard) -> None:
        """Put a card in the slot (unpowered)."""
        self._card = card
        self._powered = False

    def remove(self) -> KksCard | None:
        """Pull the card out; returns it so a test can insert it again."""
        card, self._card, self._powered = self._card, None, False
        return card

    def swap(self, card: KksCard | None) -> KksCard | None:
        """Replace the card in the slot (``None`` empties it); returns the old one."""
        old = self.remove()
        if card is not None:
            self.insert(card)
        return old

    def card_present(self) -> bool:
        return self._card is not None

    def power_on(self) -> bytes:
        if self._card is None:
            raise NoCardError("power on with an empty slot")
        self._powered = True
        return self._card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise CardRemovedError("no card in the slot")
        if not self._powered:
            raise CardUnreadableError("card not powered")
        if not 4 <= len(apdu) <= _MAX_APDU_BYTES:
            raise ValueError(f"APDU of {len(apdu)} bytes")  # kernel bug, not a card fault
        return self._card.handle_apdu(apdu)

    def power_off(self) -> None:
        self._powered = False
