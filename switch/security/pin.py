"""Online PIN: ISO 9564 format 0 under the TPK, IBM 3624 offsets (HOST_SPEC §6).

The clear PIN exists only inside :func:`verify_pin_block` (and on the terminal
side in :func:`encrypt_pin_block`); it is never stored, logged or returned.

>>> tpk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> pvk = bytes.fromhex("1111111111111111EEEEEEEEEEEEEEEE")
>>> offset = pin_offset(pvk, "123456", "6032981234567890")
>>> block = encrypt_pin_block(tpk, "123456", "6032981234567890")
>>> verify_pin_block(tpk, pvk, block, "6032981234567890", offset)
True
>>> verify_pin_block(tpk, pvk, encrypt_pin_block(tpk, "654321", "6032981234567890"),
...                  "6032981234567890", offset)
False
"""

from __future__ import annotations

import hmac

import psec.des
import psec.pin
import psec.pinblock

#: HOST_SPEC §6: a 6-digit online PIN.
PIN_LENGTH = 6
#: IBM 3624 decimalisation table (hex digit -> decimal digit).
DECIMALISATION_TABLE = "0123456789012345"
_PAN_VERIFY_OFFSET = 4
_PAN_VERIFY_LENGTH = 12


def pin_offset(pvk: bytes, pin: str, pan: str) -> str:
    """The IBM 3624 offset stored as the PIN verification value (issuer side)."""
    if len(pin) != PIN_LENGTH or not pin.isdigit():
        raise ValueError("PIN must be 6 digits")
    offset: str = psec.pin.generate_ibm3624_offset(
        pvk, DECIMALISATION_TABLE, pin, pan, _PAN_VERIFY_OFFSET, _PAN_VERIFY_LENGTH, "F"
    )
    return offset


def encrypt_pin_block(tpk: bytes, pin: str, pan: str) -> bytes:
    """Terminal side: ISO 9564 format 0 PIN block, 3DES-encrypted under the TPK."""
    clear: bytes = psec.pinblock.encode_pinblock_iso_0(pin, pan)
    encrypted: bytes = psec.des.encrypt_tdes_ecb(tpk, clear)
    return encrypted


def verify_pin_block(tpk: bytes, pvk: bytes, pin_block: bytes, pan: str, offset: str) -> bool:
    """Switch side: True when the PIN in the block matches the stored offset.

    A block that does not decode (wrong key, wrong format, wrong length) is a
    wrong PIN, as on a real HSM: it returns False and never raises.
    """
    if len(pin_block) != 8:
        return False
    try:
        clear = psec.des.decrypt_tdes_ecb(tpk, pin_block)
        pin = psec.pinblock.decode_pinblock_iso_0(clear, pan)
        if len(pin) != PIN_LENGTH:
            return False
        candidate = pin_offset(pvk, pin, pan)
    except ValueError:
        return False
    finally:
        pin = ""  # drop the reference to the clear PIN as soon as possible
    return hmac.compare_digest(candidate, offset)
