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


#: HOST_SPEC §6 logon DE 62: TPK under TMK (16) + its check value (3) + TAK under TMK
#: (16) + its check value (3), sent as hex.
LOGON_KEY_DATA_BYTES = 38


def new_double_length_key() -> bytes:
    """A fresh 3DES working key (16 bytes, odd parity), from the OS's random source."""
    key: bytes = psec.des.adjust_key_parity(os.urandom(16))
    return key


def logon_key_data(tmk: bytes, tpk: bytes, tak: bytes) -> str:
    """Host side: logon DE 62 (HOST_SPEC §6), hex, upper case.

    >>> tmk, tpk, tak = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes(16), bytes(16)
    >>> parse_key_data(tmk, logon_key_data(tmk, tpk, tak)) == (tpk, tak)
    True
    """
    raw = (psec.des.encrypt_tdes_ecb(tmk, tpk) + check_value(tpk)
           + psec.des.encrypt_tdes_ecb(tmk, tak) + check_value(tak))
    return raw.hex().upper()


def parse_key_data(tmk: bytes, key_data_hex: str) -> tuple[bytes, bytes]:
    """Terminal side: (TPK, TAK) from logon DE 62, check values verified."""
    raw = bytes.fromhex(key_data_hex)
    if len(raw) != LOGON_KEY_DATA_BYTES:
        raise ValueError("logon key data must be 38 bytes")
    tpk = psec.des.decrypt_tdes_ecb(tmk, raw[:16])
    tak = psec.des.decrypt_tdes_ecb(tmk, raw[19:35])
    if check_value(tpk) != raw[16:19] or check_value(tak) != raw[35:38]:
        raise ValueError("logon key check value mismatch")
    return tpk, tak
