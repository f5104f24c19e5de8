"""Named card profiles for the emulator (`card-emu serve --profile`), FAILURES F6 and F12.

=============  ==========================================================================
preset         what the terminal meets
=============  ==========================================================================
``kks``        a good KKS chip card (AID ``A0000006021010``), service code 221
``magstripe``  no chip, stripe only (service code 101): the EDC swipes it, DE 22 ``021``
``expired``    a chip card whose expiry (5F24, track 2) is in the past: the host says 54
``pin-blocked``  PIN try counter 9F17 at 0: GENERATE AC answers an AAC (offline decline)
``unknown-aid``  a chip card of another scheme (migration, F12): SELECT KKS gives ``6A82``
=============  ==========================================================================
"""

from __future__ import annotations

from typing import Final

from card_emulator.card import KksCard
from card_emulator.profile import CardProfile, profile_for

__all__ = ["DEFAULT_EXPIRY_YYMM", "EXPIRED_YYMM", "PRESETS", "card_for", "preset_profile"]

PRESETS: Final[tuple[str, ...]] = ("kks", "magstripe", "expired", "pin-blocked", "unknown-aid")
DEFAULT_EXPIRY_YYMM: Final[str] = "2912"
#: Used by ``expired`` when no expiry is given: long past for any test clock.
EXPIRED_YYMM: Final[str] = "2312"
#: A non-KKS debit application (an old bank card after a migration).
OTHER_AID: Final[bytes] = bytes.fromhex("A0000000031010")


def preset_profile(
    preset: str, pan: str, imk_ac: bytes, *, psn: str = "01", expiry_yymm: str | None = None
) -> CardProfile:
    """Personalise a card of the named preset; `ValueError` on an unknown name."""
    if preset not in PRESETS:
        raise ValueError(f"unknown card profile {preset!r}; known: {', '.join(PRESETS)}")
    default_expiry = EXPIRED_YYMM if preset == "expired" else DEFAULT_EXPIRY_YYMM
    expiry = expiry_yymm or default_expiry
    if preset == "magstripe":
        return profile_for(pan, psn, expiry, imk_ac, kind="magstripe")
    if preset == "pin-blocked":
        return profile_for(pan, psn, expiry, imk_ac, initial_pin_tries=0)
    if preset == "unknown-aid":
        return profile_for(pan, psn, expiry, imk_ac, aid=OTHER_AID)
    return profile_for(pan, psn, expiry, imk_ac)


def card_for(
    preset: str, pan: str, imk_ac: bytes, *, psn: str = "01", expiry_yymm: str | None = None
) -> KksCard:
    """A fresh card (ATC 0, full PIN tries unless ``pin-blocked``) of the named preset."""
    return KksCard(preset_profile(preset, pan, imk_ac, psn=psn, expiry_yymm=expiry_yymm))
