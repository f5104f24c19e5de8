"""Key material at rest and PAN tokens (HOST_SPEC §6; DESIGN.md security rules).

Terminal keys are stored wrapped under a local key-encryption key (AES-256-GCM,
the TID as associated data so a wrapped key cannot be moved to another
terminal).  PANs are stored as HMAC-SHA256 tokens plus a masked display form.

>>> kek = bytes(32)
>>> wrapped = wrap_key(kek, bytes(16), "EDC00001")
>>> unwrap_key(kek, wrapped, "EDC00001") == bytes(16)
True
"""

from __future__ import annotations

import hashlib
import hmac
import os

import psec.des
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class KeyIntegrityError(Exception):
    """A wrapped key failed its integrity check (wrong KEK or tampered row)."""


def wrap_key(kek: bytes, clear_key: bytes, context: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, clear_key, context.encode())


def unwrap_key(kek: bytes, wrapped: bytes, context: str) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context.encode())
    except (InvalidTag, ValueError) as exc:
        raise KeyIntegrityError(f"wrapped key for {context} does not verify") from exc


def pan_token(token_key: bytes, pan: str) -> str:
    """The database key of a card: HMAC-SHA256 of the PAN, hex."""
    return hmac.new(token_key, pan.encode(), hashlib.sha256).hexdigest()


def check_value(key: bytes) -> bytes:
    """HOST_SPEC §6: first 3 bytes of 3DES(key, 8 zero bytes)."""
    kcv: bytes = psec.des.generate_kcv(key, 3)
    return kcv
