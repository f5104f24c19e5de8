"""What the issuer writes into a KKS card at personalisation (HOST_SPEC §7).

A `CardProfile` is immutable: the counters that change in use (ATC, PIN try
counter) live in the `KksCard`, which starts them from the profile.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from typing import Final, Literal

from switch.security.emv import derive_icc_mk_ac

__all__ = [
    "AID_KKS",
    "AIP_KKS",
    "CardKind",
    "CardProfile",
    "SERVICE_CODE_CHIP",
    "SERVICE_CODE_STRIPE",
    "expiry_yymmdd",
    "mask_pan",
    "profile_for",
]

#: Indonesian national debit application (HOST_SPEC §7).
AID_KKS: Final[bytes] = bytes.fromhex("A0000006021010")

#: AIP: cardholder verification supported (byte 1 b5), terminal risk management
#: to be performed (b4); no offline data authentication (EMV Book 3 Annex C1).
AIP_KKS: Final[bytes] = b"\x18\x00"

#: What the card carries: an EMV chip (and a stripe, service code 2xx: "use the chip"),
#: or only a magnetic stripe (service code 1xx), read by a swipe (HOST_SPEC §3 DE 22 021).
CardKind = Literal["chip", "magstripe"]

#: Track 2 service codes (ISO/IEC 7813 §10.5): first digit 2 = chip card, 1 = stripe only.
SERVICE_CODE_CHIP: Final[str] = "221"
SERVICE_CODE_STRIPE: Final[str] = "101"
_TRACK2_DISCRETIONARY: Final[str] = "0000000000000"


@dataclass(frozen=True, slots=True)
class CardProfile:
    """Personalisation data of one card; ``icc_mk_ac`` is a clear key, never log it."""

    pan: str
    psn: str
    expiry_yymm: str
    effective_yymmdd: str
    cardholder_name: str
    icc_mk_ac: bytes = field(repr=False)
    aip: bytes = AIP_KKS
    aid: bytes = AID_KKS
    initial_atc: int = 0
    pin_try_limit: int = 3
    kind: CardKind = "chip"
    #: PIN tries left at personalisation; ``None`` = the limit, ``0`` = PIN blocked on card.
    initial_pin_tries: int | None = None

    def __post_init__(self) -> None:
        if not (self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise ValueError("PAN must be 12-19 digits")
        if not (self.psn.isdigit() and len(self.psn) == 2):
            raise ValueError("PSN must be 2 digits")
        if not (
            self.expiry_yymm.isdigit()
            and len(self.expiry_yymm) == 4
            and 1 <= int(self.expiry_yymm[2:]) <= 12
        ):
            raise ValueError("expiry must be YYMM")
        if not (self.effective_yymmdd.isdigit() and len(self.effective_yymmdd) == 6):
            raise ValueError("effective date must be YYMMDD")
        if len(self.icc_mk_ac) != 16 or len(self.aip) != 2:
            raise ValueError("ICC MK-AC must be 16 bytes and AIP 2 bytes")
        if not 0 <= self.initial_atc <= 0xFFFF or not 1 <= self.pin_try_limit <= 15:
            raise ValueError("ATC must fit 2 bytes and the PIN try limit 1-15")
        if self.initial_pin_tries is not None and not (
            0 <= self.initial_pin_tries <= self.pin_try_limit
        ):
            raise ValueError("initial PIN tries must be 0 up to the limit")
        if not 5 <= len(self.aid) <= 16:
            raise ValueError("AID must be 5-16 bytes")

    @property
    def service_code(self) -> str:
        """Track 2 service code: a chip card tells a swiping terminal to use the chip."""
        return SERVICE_CODE_CHIP if self.kind == "chip" else SERVICE_CODE_STRIPE

    @property
    def track2(self) -> str:
        """Track 2 (chip tag 57 or the stripe): PAN ``D`` YYMM service code discretionary."""
        return f"{self.pan}D{self.expiry_yymm}{self.service_code}{_TRACK2_DISCRETIONARY}"

    @property
    def masked_pan(self) -> str:
        """The PAN with all but the first 6 and last 4 digits hidden."""
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        # Keep full PANs out of logs and tracebacks (DESIGN.md house rules).
        return f"CardProfile(pan={self.masked_pan!r}, psn={self.psn!r}, kind={self.kind!r})"


def mask_pan(pan: str) -> str:
    """``6013011234567890`` -> ``601301******7890``."""
    return pan[:6] + "*" * max(len(pan) - 10, 0) + pan[-4:]


def expiry_yymmdd(expiry_yymm: str) -> str:
    """Application expiration date 5F24 (n6 YYMMDD): the last day of the expiry month.

    >>> expiry_yymmdd("2802")
    '280229'
    """
    last_day = calendar.monthrange(2000 + int(expiry_yymm[:2]), int(expiry_yymm[2:]))[1]
    return f"{expiry_yymm}{last_day:02d}"


def profile_for(
    pan: str,
    psn: str,
    expiry_yymm: str,
    imk_ac: bytes,
    *,
    cardholder_name: str = "KPM BPNT",
    effective_yymmdd: str = "240101",
    initial_atc: int = 0,
    kind: CardKind = "chip",
    aid: bytes = AID_KKS,
    initial_pin_tries: int | None = None,
) -> CardProfile:
    """Personalise a card: derive its MK-AC from the issuer master key (EMV Book 2 A1.4.1)."""
    return CardProfile(
        pan=pan,
        psn=psn,
        expiry_yymm=expiry_yymm,
        effective_yymmdd=effective_yymmdd,
        cardholder_name=cardholder_name,
        icc_mk_ac=derive_icc_mk_ac(imk_ac, pan, psn),
        initial_atc=initial_atc,
        kind=kind,
        aid=aid,
        initial_pin_tries=initial_pin_tries,
    )
