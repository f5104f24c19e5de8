"""Chip faults (FAILURES F6), sans-IO: what the card does with one message from the reader.

The vicc bridge (`card_emulator.vicc`) asks `respond` what to do with each payload
vpcd sends and carries out the answer: a `Reply` (possibly late), `Silence` (the
card never answers; the bridge drops the line after ``hold_s``, as a reader gives
up after its waiting time) or `Pull` (the card leaves the slot, unanswered).

=================  =========================================================
fault              effect on a matching APDU (``only_ins`` or every APDU)
=================  =========================================================
``mute``           no answer (`Silence`)
``6f00``           ``6F00``, no precise diagnosis
``slow``           the right answer, ``delay_s`` late
``pull-gen-ac``    GENERATE AC is processed (ATC burnt), then the card is pulled
``wrong-atr``      GET ATR answers a corrupted ATR (bad TCK, ISO 7816-3 §8.2.5)
``garbage-tlv``    the right SW ``9000``, but the data is not BER-TLV
=================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from card_emulator.card import ATR, KksCard

__all__ = [
    "CTRL_ATR",
    "CTRL_OFF",
    "CTRL_ON",
    "CTRL_RESET",
    "ChipFault",
    "FaultPlan",
    "Pull",
    "Reply",
    "Silence",
    "WRONG_ATR",
    "respond",
]

#: vpcd control bytes (vsmartcard vpcd.h): a 1-byte payload is one of these.
CTRL_OFF: Final[int] = 0x00
CTRL_ON: Final[int] = 0x01
CTRL_RESET: Final[int] = 0x02
CTRL_ATR: Final[int] = 0x04

#: The KKS ATR with one historical byte flipped and the old TCK: fails the TCK check.
WRONG_ATR: Final[bytes] = ATR[:-3] + bytes([ATR[-3] ^ 0x5A]) + ATR[-2:]
#: Data with a length byte that overruns it: no BER-TLV parser accepts it.
GARBAGE_TLV: Final[bytes] = bytes.fromhex("70FF5A08") + b"\xde\xad"
_SW_6F00: Final[bytes] = b"\x6f\x00"
_INS_GENERATE_AC: Final[int] = 0xAE
_SW_OK: Final[bytes] = b"\x90\x00"


class ChipFault(StrEnum):
    NONE = "none"
    MUTE = "mute"
    SW_6F00 = "6f00"
    SLOW = "slow"
    PULL_ON_GENERATE_AC = "pull-gen-ac"
    WRONG_ATR = "wrong-atr"
    GARBAGE_TLV = "garbage-tlv"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The fault switched on; ``delay_s`` is the slow card's delay per APDU, and how long a
    mute card keeps the line before the bridge drops it; ``only_ins`` narrows the fault to
    one instruction (e.g. ``0xAE`` GENERATE AC)."""

    fault: ChipFault = ChipFault.NONE
    delay_s: float = 2.0
    only_ins: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 600:
            raise ValueError("delay_s must be 0-600 s")
        if self.only_ins is not None and not 0 <= self.only_ins <= 0xFF:
            raise ValueError("only_ins must be one byte")


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        assert self.data, "an empty reply stalls the vpcd slot"


@dataclass(frozen=True, slots=True)
class Silence:
    hold_s: float


@dataclass(frozen=True, slots=True)
class Pull:
    pass


Outcome = Reply | Silence | Pull | None


def respond(card: KksCard, plan: FaultPlan, payload: bytes) -> Outcome:
    """What the card in the slot does with one vpcd message; ``None`` = nothing to send."""
    if len(payload) == 1:
        return _control(card, plan, payload[0])
    if len(payload) < 4:
        return Reply(b"\x67\x00")  # not even a header: wrong length, never an empty reply
    fault = plan.fault
    if plan.only_ins is not None and payload[1] != plan.only_ins:
        fault = ChipFault.NONE
    if fault is ChipFault.MUTE:
        return Silence(plan.delay_s)
    if fault is ChipFault.SW_6F00:
        return Reply(_SW_6F00)
    if fault is ChipFault.PULL_ON_GENERATE_AC and payload[1] == _INS_GENERATE_AC:
        card.handle_apdu(payload)  # the card computed, the contacts broke before it answered
        return Pull()
    answer = card.handle_apdu(payload)
    if fault is ChipFault.SLOW:
        return Reply(answer, plan.delay_s)
    if fault is ChipFault.GARBAGE_TLV and answer[-2:] == _SW_OK and len(answer) > 2:
        return Reply(GARBAGE_TLV + _SW_OK)
    return Reply(answer)


def _control(card: KksCard, plan: FaultPlan, code: int) -> Outcome:
    """Power off / on / reset keep the ATC and PIN try counter (`KksCard.reset`)."""
    if code == CTRL_ATR:
        # pcscd polls presence with this several times a second: never touch the session.
        return Reply(WRONG_ATR if plan.fault is ChipFault.WRONG_ATR else ATR)
    if code == CTRL_ON:
        card.power_on()
    elif code in (CTRL_OFF, CTRL_RESET):
        card.reset()
    return None
