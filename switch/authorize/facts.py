"""What the decision needs to know, loaded by the host from the database."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class TerminalFacts:
    tid: str
    active: bool
    mid: str
    ewarong_active: bool
    #: Clear TPK of the current logon session; ``None`` until the terminal logs on.
    tpk: bytes | None
    #: Clear TAK of the current logon session (HOST_SPEC §6 MAC key).
    tak: bytes | None = None


@dataclass(frozen=True)
class CardFacts:
    card_id: int
    status: str
    expiry_yymm: str
    pin_offset: str
    wrong_pin_count: int
    kpm_active: bool
    wallet_account_id: int
    balance_sen: int


@dataclass(frozen=True)
class ItemFacts:
    code: str
    category: str
    allowed: bool


class PinOutcome(enum.Enum):
    NOT_CHECKED = "not_checked"
    CORRECT = "correct"
    WRONG = "wrong"
    #: Wrong, and the tries are used up: the card is blocked (RC 75).
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Decision:
    """The outcome of one card request: a response code and what it implies."""

    rc: str
    pin: PinOutcome = PinOutcome.NOT_CHECKED
    amount_sen: int = 0
    reason: str = ""
