"""Message authentication: ISO 9797-1 algorithm 3 (retail MAC), padding method 1,
under the TAK (HOST_SPEC §6).

The MAC covers the encoded message from the MTI to the end of the last DE before
DE 64.  DE 64 is the highest field of the primary bitmap, so it is always the last
8 bytes of a message that carries it: encode with an 8-byte placeholder, then sign.

>>> tak = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> signed = sign(tak, b"\\x02\\x00" + bytes(8) + b"payload" + bytes(MAC_LEN))
>>> verify(tak, signed), verify(tak, signed[:-1] + b"\\x00")
(True, False)
"""

from __future__ import annotations

import hmac

from switch.security import des

MAC_LEN = 8
#: HOST_SPEC §6: MAC required on these requests and their responses.
MAC_REQUESTS = frozenset({"0100", "0200", "0400", "0401", "0320", "0500"})
MAC_RESPONSES = frozenset({"0110", "0210", "0410", "0330", "0510"})
PLACEHOLDER = bytes(MAC_LEN)


def requires_mac(mti: str) -> bool:
    return mti in MAC_REQUESTS or mti in MAC_RESPONSES


def compute_mac(tak: bytes, mac_input: bytes) -> bytes:
    """X9.19 / ISO 9797-1 alg 3: single-DES CBC under K1, last block 3DES (K1, K2).

    Padding method 1 (zeros; an empty input is one zero block), as
    ``psec.mac.generate_retail_mac(K1, K2, mac_input, padding=1)``.
    """
    if len(tak) != 16:
        raise ValueError("TAK must be a double-length key")
    return des.retail_mac_cached(tak, des.pad_method_1(mac_input))


def sign(tak: bytes, encoded: bytes) -> bytes:
    """Replace the trailing DE 64 of an encoded message with its MAC."""
    body = encoded[:-MAC_LEN]
    return body + compute_mac(tak, body)


def verify(tak: bytes, encoded: bytes) -> bool:
    """True when the trailing 8 bytes are the MAC of what precedes them."""
    if len(encoded) <= MAC_LEN:
        return False
    body, mac = encoded[:-MAC_LEN], encoded[-MAC_LEN:]
    return hmac.compare_digest(mac, compute_mac(tak, body))
