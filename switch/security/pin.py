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

from switch.security import des

#: HOST_SPEC §6: a 6-digit online PIN.
PIN_LENGTH = 6
#: IBM 3624 decimalisation table (hex digit -> decimal digit).
DECIMALISATION_TABLE = "0123456789012345"
_PAN_VERIFY_OFFSET = 4
_PAN_VERIFY_LENGTH = 12
_PAN_PAD = "F"

_DIGITS = frozenset("0123456789")
_DECIMALISE = str.maketrans("0123456789abcdef", DECIMALISATION_TABLE)
#: ``_OFFSET_DIGIT[pin digit][decimalised digit]``: (pin - decimalised) mod 10.
_OFFSET_DIGIT = tuple({str(d): str((p - d) % 10) for d in range(10)} for p in range(10))


def _is_digits(text: str) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also takes other scripts' digits)."""
    return _DIGITS.issuperset(text)


def _pan_block(pan: str) -> int:
    """ISO 9564 format 0 PAN field: 0000 || the 12 rightmost PAN digits but the check digit."""
    if len(pan) < 13 or not _is_digits(pan):
        raise ValueError("PAN must be at least 13 digits long")
    return int(pan[-13:-1], 16)


def _decimalised(pvk: bytes, pan: str) -> str:
    """IBM 3624 intermediate PIN: 3DES(PVK, validation data), decimalised (16 digits)."""
    if len(pvk) not in {8, 16, 24}:
        raise ValueError("PVK must be a DES key")
    if len(pan) > 19 or not _is_digits(pan):
        raise ValueError("PAN must be less than 19 digits")
    validation = pan[_PAN_VERIFY_OFFSET : _PAN_VERIFY_OFFSET + _PAN_VERIFY_LENGTH]
    if len(validation) != _PAN_VERIFY_LENGTH:
        raise ValueError("PAN verify offset and length must be within provided PAN")
    validation = validation[:16].ljust(16, _PAN_PAD)
    encrypted = des.ecb_encrypt(pvk, bytes.fromhex(validation), cache=True)
    return encrypted.hex().translate(_DECIMALISE)


def _offset(pvk: bytes, pin: str, pan: str) -> str:
    """``psec.pin.generate_ibm3624_offset`` for a PIN already checked to be 6 ASCII digits."""
    decimalised = _decimalised(pvk, pan)
    return "".join(_OFFSET_DIGIT[int(p)][d] for p, d in zip(pin, decimalised, strict=False))


def pin_offset(pvk: bytes, pin: str, pan: str) -> str:
    """The IBM 3624 offset stored as the PIN verification value (issuer side)."""
    if len(pin) != PIN_LENGTH or not pin.isdigit():
        raise ValueError("PIN must be 6 digits")
    if len(pvk) not in {8, 16, 24}:
        raise ValueError("PVK must be a DES key")
    if not _is_digits(pin):
        raise ValueError("PIN must be from 4 to 16 digits")
    return _offset(pvk, pin, pan)


def encrypt_pin_block(tpk: bytes, pin: str, pan: str) -> bytes:
    """Terminal side: ISO 9564 format 0 PIN block, 3DES-encrypted under the TPK."""
    if len(pin) < 4 or len(pin) > 12 or not _is_digits(pin):
        raise ValueError("PIN must be between 4 and 12 digits long")
    pin_field = int(f"0{len(pin):X}{pin}".ljust(16, "F"), 16)
    clear = (pin_field ^ _pan_block(pan)).to_bytes(8, "big")
    return des.ecb_encrypt(tpk, clear, cache=True)


def verify_pin_block(tpk: bytes, pvk: bytes, pin_block: bytes, pan: str, offset: str) -> bool:
    """Switch side: True when the PIN in the block matches the stored offset.

    A block that does not decode (wrong key, wrong format, wrong length) is a
    wrong PIN, as on a real HSM: it returns False and never raises.
    """
    clear = 0
    block = pin = ""
    try:
        if len(pin_block) != 8 or not isinstance(pan, str):
            return False
        clear = int.from_bytes(des.ecb_decrypt(tpk, bytes(pin_block), cache=True), "big")
        # ISO 9564 format 0 holding a 6-digit PIN: 0 | 6 | six digits | F * 8.
        block = f"{clear ^ _pan_block(pan):016x}"
        if block[:2] != "06" or block[8:] != "ffffffff":
            return False
        pin = block[2:8]
        if not _is_digits(pin):
            return False
        return hmac.compare_digest(_offset(pvk, pin, pan), offset)
    except (ValueError, TypeError):
        return False
    finally:
        # drop the references to the clear PIN (and its block) as soon as possible
        clear = 0
        block = pin = ""
