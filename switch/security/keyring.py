"""Key material the host needs, decoded once from settings (never logged)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the type: the decision core loads no settings machinery
    from switch.settings import Settings


@dataclass(frozen=True, repr=False)
class Keyring:
    kek: bytes
    pan_token_key: bytes
    pvk: bytes
    imk_ac: bytes
    audit_key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        return cls(
            kek=bytes.fromhex(settings.kek_hex),
            pan_token_key=bytes.fromhex(settings.pan_token_key_hex),
            pvk=bytes.fromhex(settings.pvk_hex),
            imk_ac=bytes.fromhex(settings.imk_ac_hex),
            audit_key=bytes.fromhex(settings.audit_key_hex),
        )

    def __repr__(self) -> str:
        return "Keyring(<redacted>)"
