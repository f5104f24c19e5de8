"""(Triple) DES building blocks for the MAC, PIN and EMV modules, on `cryptography`.

Each operation is one ``update`` call over all the blocks; keys are expanded to
24 bytes here (K1K2 -> K1K2K1, K -> KKK: single DES), so `cryptography` never
warns about short 3DES keys.

Building a cipher context (key schedule, OpenSSL setup) costs more than
enciphering a few hundred bytes, so the keys that are used again and again (TAK,
TPK, PVK, IMK) keep their contexts in LRU caches (`KEY_CACHE_SIZE`
entries per cache; `clear_caches` drops them).  Derived per-card and
per-transaction keys (ICC master key, session key) use fresh contexts.

>>> key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> ecb_encrypt(key, b"12345678").hex().upper()
'41D2FFBA3CDC15FE'
>>> ecb_decrypt(key, bytes.fromhex("41D2FFBA3CDC15FE"), cache=True)
b'12345678'
>>> padded = pad_method_2(b"")
>>> retail_mac(key, padded) == RetailMac(key).mac(padded) == retail_mac_cached(key, padded)
True
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography 42: only the deprecated path (warning filtered in __init__)
    from cryptography.hazmat.primitives.ciphers.algorithms import (  # type: ignore[assignment, unused-ignore]
        TripleDES,
    )

__all__ = [
    "KEY_CACHE_SIZE",
    "RetailMac",
    "adjust_parity",
    "clear_caches",
    "ecb_decrypt",
    "ecb_encrypt",
    "expand_key",
    "pad_method_1",
    "pad_method_2",
    "retail_mac",
    "retail_mac_cached",
]

BLOCK: Final[int] = 8
#: Entries per key cache: one per terminal key in use, plus the PVK and IMK.  Sized for a
#: switch's active terminals, not a demo's: with 256, more than about 250 terminals in use
#: (a TAK and a TPK each) made every request build its contexts again (7.8 -> 14.6 µs a
#: MAC).  Full, the three caches hold about 40 MB (measured: 2.4 KB a cached MAC key,
#: 1.2 KB an ECB context).
KEY_CACHE_SIZE: Final[int] = 8_192
_ZERO: Final[bytes] = bytes(BLOCK)
_ECB: Final[modes.ECB] = modes.ECB()
_CBC_ZERO_IV: Final[modes.CBC] = modes.CBC(_ZERO)

#: Byte -> byte with its low bit set so the byte has odd parity (DES key parity).
_ODD_PARITY: Final[bytes] = bytes(b if bin(b).count("1") % 2 else b ^ 1 for b in range(256))


def expand_key(key: bytes) -> bytes:
    """A single, double or triple DES key as the 24-byte 3DES key it stands for.

    >>> expand_key(bytes(range(16)))[16:] == bytes(range(8))
    True
    """
    if type(key) is not bytes:
        key = bytes(memoryview(key))  # TypeError for non-buffers, like cryptography
    size = len(key)
    if size == 24:
        return key
    if size == 16:
        return key + key[:8]
    if size == 8:
        return key * 3
    raise ValueError(f"Invalid key size ({size * 8}) for 3DES.")


def adjust_parity(key: bytes) -> bytes:
    """Set each byte to odd parity (as `pyemv.tools.adjust_key_parity`)."""
    return key.translate(_ODD_PARITY)


def pad_method_1(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 1: zero bytes to a whole block; empty -> one block."""
    remainder = len(data) % BLOCK
    if remainder:
        return data + _ZERO[remainder:]
    return data if data else _ZERO


def pad_method_2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 0x80, then method 1."""
    return pad_method_1(data + b"\x80")


def _check_blocks(data: bytes) -> None:
    if len(data) % BLOCK:
        # A cached context must never be left holding a partial block.
        raise ValueError(f"Data length ({len(data)}) must be multiple of DES block size 8.")


class _SharedContext:
    """An ECB context used by one caller at a time (ECB keeps no state between calls)."""

    __slots__ = ("_context", "_lock")

    def __init__(self, context: CipherContext) -> None:
        self._context = context
        self._lock = threading.Lock()

    def update(self, data: bytes) -> bytes:
        with self._lock:
            return self._context.update(data)


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _ecb_encryptor(key24: bytes) -> _SharedContext:
    return _SharedContext(Cipher(TripleDES(key24), _ECB).encryptor())


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _ecb_decryptor(key24: bytes) -> _SharedContext:
    return _SharedContext(Cipher(TripleDES(key24), _ECB).decryptor())


def ecb_encrypt(key: bytes, data: bytes, *, cache: bool = False) -> bytes:
    """3DES-ECB encryption of whole blocks; ``cache`` keeps the context for `key`."""
    _check_blocks(data)
    key24 = expand_key(key)
    if cache:
        return _ecb_encryptor(key24).update(data)
    return Cipher(TripleDES(key24), _ECB).encryptor().update(data)


def ecb_decrypt(key: bytes, data: bytes, *, cache: bool = False) -> bytes:
    """3DES-ECB decryption of whole blocks; ``cache`` keeps the context for `key`."""
    _check_blocks(data)
    key24 = expand_key(key)
    if cache:
        return _ecb_decryptor(key24).update(data)
    return Cipher(TripleDES(key24), _ECB).decryptor().update(data)


def _split_mac_key(key: bytes) -> tuple[bytes, bytes]:
    if len(key) != 16:
        raise ValueError("MAC key must be a double-length DES key")
    if type(key) is not bytes:
        key = bytes(memoryview(key))
    return key[:8], key[8:]


def retail_mac(key: bytes, padded: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (K1, K2 = halves of `key`) over padded data.

    Single-DES CBC under K1 over all blocks but the last (one call), then the
    last block XOR that chaining value through E(K1) D(K2) E(K1), which is 3DES
    under K1K2K1.  Fresh contexts: for one-off keys (session keys).
    """
    k1, k2 = _split_mac_key(key)
    size = len(padded)
    if not size or size % BLOCK:
        raise ValueError(f"MAC input ({size} bytes) must be padded to whole blocks")
    final = Cipher(TripleDES(k1 + k2 + k1), _ECB).encryptor()
    if size == BLOCK:
        return final.update(padded)
    chain = Cipher(TripleDES(k1 * 3), _CBC_ZERO_IV).encryptor().update(padded[: size - BLOCK])
    last = int.from_bytes(padded[size - BLOCK :], "big") ^ int.from_bytes(chain[-BLOCK:], "big")
    return final.update(last.to_bytes(BLOCK, "big"))


class RetailMac:
    """`retail_mac` under one key, with both contexts kept for reuse.

    The single-DES CBC context keeps its chaining value between calls; each
    call XORs that value into its first block, which restarts the chain from a
    zero IV.  A lock makes one call at a time use the chain.
    """

    __slots__ = ("_chain", "_chain_cipher", "_chain_value", "_final", "_lock")

    def __init__(self, key: bytes) -> None:
        k1, k2 = _split_mac_key(key)
        self._chain_cipher = Cipher(TripleDES(k1 * 3), _CBC_ZERO_IV)
        self._chain = self._chain_cipher.encryptor()
        self._chain_value = 0  # the context's current IV, as an integer
        self._final = Cipher(TripleDES(k1 + k2 + k1), _ECB).encryptor()
        self._lock = threading.Lock()

    def mac(self, padded: bytes) -> bytes:
        """The 8-byte MAC of `padded` (a whole number of blocks, at least one)."""
        size = len(padded)
        if not size:
            raise ValueError("MAC input must be padded to at least one block")
        _check_blocks(padded)
        last = int.from_bytes(padded[size - BLOCK :], "big")
        with self._lock:
            if size > BLOCK:
                first = int.from_bytes(padded[:BLOCK], "big") ^ self._chain_value
                try:
                    out = self._chain.update(
                        first.to_bytes(BLOCK, "big") + padded[BLOCK : size - BLOCK]
                    )
                    self._chain_value = int.from_bytes(out[-BLOCK:], "big")
                except BaseException:
                    # The chaining value is unknown now: start a new chain.
                    self._chain = self._chain_cipher.encryptor()
                    self._chain_value = 0
                    raise
                last ^= self._chain_value
            return self._final.update(last.to_bytes(BLOCK, "big"))


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _retail_mac_for(key: bytes) -> RetailMac:
    return RetailMac(key)


def retail_mac_cached(key: bytes, padded: bytes) -> bytes:
    """`retail_mac` with the contexts for `key` kept in an LRU cache."""
    if type(key) is not bytes:
        key = bytes(memoryview(key))
    return _retail_mac_for(key).mac(padded)


def clear_caches() -> None:
    """Forget every cached context (and so the keys they hold)."""
    _ecb_encryptor.cache_clear()
    _ecb_decryptor.cache_clear()
    _retail_mac_for.cache_clear()


# A child process starts with no cached context (and so no lock copied mid-use).
os.register_at_fork(after_in_child=clear_caches)
