"""The `cryptography`-backed MAC, PIN and EMV code equals psec / pyemv bit for bit.

psec and pyemv (what switch/security used before switch/security/des.py) are
the oracles here, called directly.
"""

from __future__ import annotations

import hmac
import threading
import warnings

import psec.des
import psec.mac
import psec.pin
import psec.pinblock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import kd as pyemv_kd

from switch.security import des, emv, mac, pin

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

double_keys = st.binary(min_size=16, max_size=16)
des_keys = st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
#: 0..600 bytes, with whole numbers of blocks drawn often (padding edge cases).
messages = st.one_of(
    st.binary(max_size=600),
    st.integers(min_value=0, max_value=75).flatmap(
        lambda blocks: st.binary(min_size=8 * blocks, max_size=8 * blocks)
    ),
)
pans = st.integers(min_value=16, max_value=19).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n)
)
pins = st.text("0123456789", min_size=pin.PIN_LENGTH, max_size=pin.PIN_LENGTH)
psns = st.text("0123456789", min_size=2, max_size=2)
two_bytes = st.binary(min_size=2, max_size=2)


def psec_mac(tak: bytes, data: bytes) -> bytes:
    oracle: bytes = psec.mac.generate_retail_mac(tak[:8], tak[8:], data, padding=1)
    return oracle


def psec_offset(pvk: bytes, pin_digits: str, pan: str) -> str:
    offset: str = psec.pin.generate_ibm3624_offset(
        pvk, pin.DECIMALISATION_TABLE, pin_digits, pan, 4, 12, "F"
    )
    return offset


def psec_verify_pin_block(tpk: bytes, pvk: bytes, block: bytes, pan: str, offset: str) -> bool:
    """The psec-based ``verify_pin_block`` this change replaced."""
    if len(block) != 8:
        return False
    try:
        clear_pin = psec.pinblock.decode_pinblock_iso_0(psec.des.decrypt_tdes_ecb(tpk, block), pan)
        if len(clear_pin) != pin.PIN_LENGTH:
            return False
        candidate = psec_offset(pvk, clear_pin, pan)
    except ValueError:
        return False
    return hmac.compare_digest(candidate, offset)


def pyemv_session_key(imk: bytes, pan: str, psn: str, atc: bytes) -> bytes:
    mk = pyemv_kd.derive_icc_mk_a(imk, pan, psn)
    return bytes(pyemv_kd.derive_common_sk(mk, atc + bytes(6)))


@st.composite
def icc_tags(draw: st.DrawFn) -> dict[str, bytes]:
    tags = {tag: draw(st.binary(min_size=n, max_size=n)) for tag, n in emv.CDOL1_TAGS}
    if draw(st.booleans()):
        del tags["9F03"]  # HOST_SPEC §7 does not carry it: zeros
    tags["82"] = draw(two_bytes)
    tags["9F36"] = draw(two_bytes)
    return tags


def cdol1_of(tags: dict[str, bytes]) -> bytes:
    return b"".join(tags.get(tag, bytes(n)) for tag, n in emv.CDOL1_TAGS)


# --- des.py -------------------------------------------------------------------------------


@FAST
@given(key=des_keys, blocks=st.integers(min_value=1, max_value=40), data=st.data())
def test_ecb_equals_psec(key: bytes, blocks: int, data: st.DataObject) -> None:
    clear = data.draw(st.binary(min_size=8 * blocks, max_size=8 * blocks))
    expected = psec.des.encrypt_tdes_ecb(key, clear)
    assert des.ecb_encrypt(key, clear) == expected
    assert des.ecb_encrypt(key, clear, cache=True) == expected
    assert des.ecb_decrypt(key, expected) == clear
    assert des.ecb_decrypt(key, expected, cache=True) == clear


@FAST
@given(key=double_keys, data=messages)
def test_retail_mac_fresh_and_cached_equal_psec(key: bytes, data: bytes) -> None:
    padded = psec.mac.pad_iso_1(data, 8)
    expected = psec_mac(key, data)
    assert des.retail_mac(key, padded) == expected
    assert des.retail_mac_cached(key, padded) == expected
    assert des.RetailMac(key).mac(padded) == expected


@FAST
@given(key=st.binary(max_size=40))
def test_key_sizes_as_cryptography(key: bytes) -> None:
    if len(key) in {8, 16, 24}:
        assert des.ecb_encrypt(key, bytes(8)) == psec.des.encrypt_tdes_ecb(key, bytes(8))
    else:
        with pytest.raises(ValueError):
            des.ecb_encrypt(key, bytes(8))


@FAST
@given(key=st.binary(min_size=16, max_size=16))
def test_parity_equals_pyemv(key: bytes) -> None:
    from pyemv.tools import adjust_key_parity

    assert des.adjust_parity(key) == adjust_key_parity(key)


def test_cached_contexts_refuse_partial_blocks() -> None:
    key = bytes(range(16))
    for bad in (b"1234567", bytes(9)):
        with pytest.raises(ValueError):
            des.ecb_encrypt(key, bad, cache=True)
        with pytest.raises(ValueError):
            des.retail_mac_cached(key, bad)
    with pytest.raises(ValueError):
        des.retail_mac_cached(key, b"")
    with pytest.raises(ValueError):
        des.ecb_decrypt(key, bytes(12), cache=True)
    # ... and still answer correctly afterwards.
    assert des.ecb_encrypt(key, bytes(8), cache=True) == psec.des.encrypt_tdes_ecb(key, bytes(8))


def test_no_deprecation_warning_from_the_fast_path() -> None:
    des.clear_caches()
    key = bytes(range(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mac.sign(key, bytes(40))
        pin.verify_pin_block(
            key,
            key,
            pin.encrypt_pin_block(key, "123456", "6032981234567890"),
            "6032981234567890",
            pin.pin_offset(key, "123456", "6032981234567890"),
        )
        emv.compute_arpc(key, "6032981234567890", "01", {"9F26": bytes(8), "9F36": bytes(2)}, b"00")


# --- mac.py -------------------------------------------------------------------------------


@FAST
@given(tak=double_keys, data=messages)
def test_compute_mac_equals_psec(tak: bytes, data: bytes) -> None:
    assert mac.compute_mac(tak, data) == psec_mac(tak, data)


@FAST
@given(
    taks=st.lists(double_keys, min_size=1, max_size=3),
    data=st.lists(messages, max_size=12),
    picks=st.lists(st.integers(min_value=0, max_value=2), min_size=12, max_size=12),
)
def test_reused_key_contexts_carry_no_state_between_messages(
    taks: list[bytes], data: list[bytes], picks: list[int]
) -> None:
    # The cached CBC context keeps its chaining value: interleave keys and messages.
    for message, pick in zip(data, picks, strict=False):
        tak = taks[pick % len(taks)]
        assert mac.compute_mac(tak, message) == psec_mac(tak, message)


@FAST
@given(tak=double_keys, other=double_keys, body=messages, flip=st.integers(min_value=0))
def test_sign_verify_and_tampering(tak: bytes, other: bytes, body: bytes, flip: int) -> None:
    signed = mac.sign(tak, body + mac.PLACEHOLDER)
    assert signed == body + psec_mac(tak, body)
    if not body:  # nothing to authenticate: refused, as before
        assert not mac.verify(tak, signed)
        return
    assert mac.verify(tak, signed)
    position = flip % len(signed)
    tampered = bytearray(signed)
    tampered[position] ^= 1 << (flip % 8)
    assert not mac.verify(tak, bytes(tampered))
    if other != tak:
        assert not mac.verify(other, signed)
    assert not mac.verify(tak, signed[:8])


def test_mac_key_must_be_double_length() -> None:
    with pytest.raises(ValueError):
        mac.compute_mac(bytes(8), b"x")


def test_concurrent_macs_under_one_key() -> None:
    tak = bytes(range(16))
    inputs = [bytes([i]) * (i * 7 % 300) for i in range(64)]
    expected = [psec_mac(tak, m) for m in inputs]
    failures: list[int] = []

    def worker() -> None:
        for _ in range(20):
            for i, message in enumerate(inputs):
                if mac.compute_mac(tak, message) != expected[i]:
                    failures.append(i)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- pin.py -------------------------------------------------------------------------------


@FAST
@given(pvk=des_keys, pin_digits=pins, pan=pans)
def test_pin_offset_equals_psec(pvk: bytes, pin_digits: str, pan: str) -> None:
    assert pin.pin_offset(pvk, pin_digits, pan) == psec_offset(pvk, pin_digits, pan)


@FAST
@given(
    tpk=des_keys,
    pin_digits=st.text("0123456789", min_size=4, max_size=12),
    pan=st.integers(min_value=13, max_value=19).flatmap(
        lambda n: st.text("0123456789", min_size=n, max_size=n)
    ),
)
def test_encrypt_pin_block_equals_psec(tpk: bytes, pin_digits: str, pan: str) -> None:
    clear = psec.pinblock.encode_pinblock_iso_0(pin_digits, pan)
    assert pin.encrypt_pin_block(tpk, pin_digits, pan) == psec.des.encrypt_tdes_ecb(tpk, clear)


@FAST
@given(tpk=des_keys, pvk=des_keys, pin_digits=pins, other_pin=pins, pan=pans, other=des_keys)
def test_verify_pin_block_right_and_wrong(
    tpk: bytes, pvk: bytes, pin_digits: str, other_pin: str, pan: str, other: bytes
) -> None:
    offset = psec_offset(pvk, pin_digits, pan)
    block = pin.encrypt_pin_block(tpk, pin_digits, pan)
    assert pin.verify_pin_block(tpk, pvk, block, pan, offset)
    wrong = pin.encrypt_pin_block(tpk, other_pin, pan)
    assert pin.verify_pin_block(tpk, pvk, wrong, pan, offset) == (other_pin == pin_digits)
    for args in [
        (other, pvk, block, pan, offset),  # wrong TPK
        (tpk, other, block, pan, offset),  # wrong PVK
    ]:
        assert pin.verify_pin_block(*args) == psec_verify_pin_block(*args)


@FAST
@given(
    tpk=des_keys,
    pvk=des_keys,
    block=st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=12)),
    pan=st.one_of(pans, st.text(max_size=22)),
    offset=st.one_of(st.text("0123456789", min_size=6, max_size=6), st.text(max_size=8)),
)
def test_verify_pin_block_on_garbage_equals_psec(
    tpk: bytes, pvk: bytes, block: bytes, pan: str, offset: str
) -> None:
    try:
        expected = psec_verify_pin_block(tpk, pvk, block, pan, offset)
    except TypeError:  # psec let a non-ASCII offset through to compare_digest
        expected = False
    assert pin.verify_pin_block(tpk, pvk, block, pan, offset) is expected


@FAST
@given(
    tpk=des_keys,
    pvk=des_keys,
    pan=pans,
    nibbles=st.one_of(pins, st.text("0123456789abcdef", min_size=6, max_size=6)),
    header=st.sampled_from(["06", "06", "04", "16", "0c"]),
    filler=st.sampled_from(["ffffffff", "ffffffff", "fffffffe", "0fffffff"]),
)
def test_decodable_blocks_equal_psec(
    tpk: bytes, pvk: bytes, pan: str, nibbles: str, header: str, filler: str
) -> None:
    # Clear blocks that get past the early rejections, so the decode path is compared.
    clear = int(header + nibbles + filler, 16) ^ int(pan[-13:-1], 16)
    encrypted = psec.des.encrypt_tdes_ecb(tpk, clear.to_bytes(8, "big"))
    offsets = ["000000", "123456"]
    if nibbles.isdigit():
        offsets.append(psec_offset(pvk, nibbles, pan))
    for offset in offsets:
        expected = psec_verify_pin_block(tpk, pvk, encrypted, pan, offset)
        assert pin.verify_pin_block(tpk, pvk, encrypted, pan, offset) is expected
    if nibbles.isdigit() and header == "06" and filler == "ffffffff":
        assert pin.verify_pin_block(tpk, pvk, encrypted, pan, offsets[-1])


_KEY = bytes(range(16))
_PAN = "6032981234567890"
_BLOCK = pin.encrypt_pin_block(_KEY, "123456", _PAN)
_OFFSET = pin.pin_offset(_KEY, "123456", _PAN)


@pytest.mark.parametrize(
    "args",
    [
        (_KEY, _KEY, None, _PAN, _OFFSET),
        (_KEY, _KEY, _BLOCK, None, _OFFSET),
        (_KEY, _KEY, _BLOCK, _PAN.encode(), _OFFSET),
        (_KEY, _KEY, _BLOCK, _PAN, None),
        (_KEY, _KEY, _BLOCK, _PAN, _OFFSET.encode()),
        (_KEY, _KEY, _BLOCK, _PAN, "١٢٣٤٥٦"),
        (None, _KEY, _BLOCK, _PAN, _OFFSET),
        ("0" * 16, _KEY, _BLOCK, _PAN, _OFFSET),
        (_KEY[:15], _KEY, _BLOCK, _PAN, _OFFSET),
        (_KEY, _KEY[:7], _BLOCK, _PAN, _OFFSET),
        (_KEY, None, _BLOCK, _PAN, _OFFSET),
        (_KEY, _KEY, _BLOCK.hex()[:8], _PAN, _OFFSET),
        (_KEY, _KEY, _BLOCK[:7], _PAN, _OFFSET),
        (_KEY, _KEY, _BLOCK, _PAN + "0000", _OFFSET),
        (_KEY, _KEY, _BLOCK, _PAN[:-1] + "٠", _OFFSET),
        (_KEY, _KEY, _BLOCK, _PAN[:15], _OFFSET),
    ],
)
def test_verify_pin_block_never_raises(args: tuple[object, ...]) -> None:
    assert pin.verify_pin_block(_KEY, _KEY, _BLOCK, _PAN, _OFFSET)  # the unbroken case
    assert pin.verify_pin_block(*args) is False  # type: ignore[arg-type]


def test_pin_offset_rejects_what_psec_rejects() -> None:
    pvk = bytes(16)
    for bad_pin in ("12345", "1234567", "12345a", "١٢٣٤٥٦"):
        with pytest.raises(ValueError):
            pin.pin_offset(pvk, bad_pin, "6032981234567890")
    for bad_pan in ("603298123456789", "60329812345678901234", "603298123456789a"):
        with pytest.raises(ValueError):
            pin.pin_offset(pvk, "123456", bad_pan)
    with pytest.raises(ValueError):
        pin.pin_offset(bytes(15), "123456", "6032981234567890")


# --- emv.py -------------------------------------------------------------------------------


@FAST
@given(imk=double_keys, pan=pans, psn=psns)
def test_icc_master_key_equals_pyemv(imk: bytes, pan: str, psn: str) -> None:
    assert emv.derive_icc_mk_ac(imk, pan, psn) == pyemv_kd.derive_icc_mk_a(imk, pan, psn)


@FAST
@given(mk=double_keys, atc=two_bytes)
def test_session_key_equals_pyemv(mk: bytes, atc: bytes) -> None:
    assert emv.derive_session_key_ac(mk, atc) == pyemv_kd.derive_common_sk(mk, atc + bytes(6))


@FAST
@given(mk=double_keys, tags=icc_tags())
def test_compute_arqc_equals_pyemv(mk: bytes, tags: dict[str, bytes]) -> None:
    sk = bytes(pyemv_kd.derive_common_sk(mk, tags["9F36"] + bytes(6)))
    data = cdol1_of(tags) + tags["82"] + tags["9F36"]
    expected = pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV)
    got = emv.compute_arqc(mk, cdol1_data=cdol1_of(tags), aip=tags["82"], atc=tags["9F36"])
    assert got == expected


@FAST
@given(sk=double_keys, data=messages)
def test_retail_mac_padding_2_equals_pyemv(sk: bytes, data: bytes) -> None:
    expected = pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV)
    assert des.retail_mac(sk, des.pad_method_2(data)) == expected


@FAST
@given(
    imk=double_keys,
    other=double_keys,
    pan=pans,
    psn=psns,
    tags=icc_tags(),
    tamper=st.sampled_from(
        ["9F02", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36", "9F26"]
    ),
    bit=st.integers(min_value=0, max_value=7),
)
def test_verify_arqc_against_pyemv_cryptogram(
    imk: bytes, other: bytes, pan: str, psn: str, tags: dict[str, bytes], tamper: str, bit: int
) -> None:
    sk = pyemv_session_key(imk, pan, psn, tags["9F36"])
    data = cdol1_of(tags) + tags["82"] + tags["9F36"]
    tags = {**tags, "9F26": pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV)}
    assert emv.verify_arqc(imk, pan, psn, tags)
    flipped = bytearray(tags[tamper])
    flipped[0] ^= 1 << bit
    assert not emv.verify_arqc(imk, pan, psn, {**tags, tamper: bytes(flipped)})
    if other != imk:
        assert not emv.verify_arqc(other, pan, psn, tags)
    other_psn = f"{(int(psn) + 1) % 100:02d}"
    assert not emv.verify_arqc(imk, pan, other_psn, tags)
    assert not emv.verify_arqc(imk, pan, psn, {k: v for k, v in tags.items() if k != tamper})


@FAST
@given(
    imk=double_keys,
    pan=pans,
    psn=psns,
    tags=icc_tags(),
    arqc=st.binary(min_size=8, max_size=8),
    arc=two_bytes,
)
def test_compute_arpc_equals_pyemv(
    imk: bytes, pan: str, psn: str, tags: dict[str, bytes], arqc: bytes, arc: bytes
) -> None:
    sk = pyemv_session_key(imk, pan, psn, tags["9F36"])
    expected = pyemv_ac.generate_arpc_1(sk, arqc, arc)
    assert emv.compute_arpc(imk, pan, psn, {**tags, "9F26": arqc}, arc) == expected


def test_compute_arpc_still_checks_its_inputs() -> None:
    tags = {"9F26": bytes(8), "9F36": bytes(2)}
    with pytest.raises(emv.IccDataError):
        emv.compute_arpc(bytes(16), "6032981234567890", "01", {"9F26": bytes(7)}, b"00")
    with pytest.raises(ValueError):
        emv.compute_arpc(bytes(16), "6032981234567890", "01", tags, b"0")
    with pytest.raises(ValueError):
        emv.derive_session_key_ac(bytes(16), b"\x00")
    with pytest.raises(ValueError):
        emv.derive_session_key_ac(bytes(8), b"\x00\x01")


@FAST
@given(imk=double_keys, pan=pans, psn=psns, tags=icc_tags(), arc=two_bytes)
def test_one_session_serves_the_arqc_and_the_arpc(
    imk: bytes, pan: str, psn: str, tags: dict[str, bytes], arc: bytes
) -> None:
    """A request's :class:`emv.AcSession` gives pyemv's ARQC, then pyemv's ARPC over it:
    the MAC's chaining state left by the ARQC does not reach the one-block ARPC."""
    sk = pyemv_session_key(imk, pan, psn, tags["9F36"])
    data = cdol1_of(tags) + tags["82"] + tags["9F36"]
    arqc = pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV)
    session = emv.AcSession(imk, pan, psn, tags["9F36"])
    signed = {**tags, "9F26": arqc}
    assert emv.verify_arqc(imk, pan, psn, signed, session)
    assert emv.compute_arpc(imk, pan, psn, signed, arc, session) == (
        pyemv_ac.generate_arpc_1(sk, arqc, arc))
    # again, in the other order, on the same session
    assert emv.compute_arpc(imk, pan, psn, signed, arc, session) == (
        pyemv_ac.generate_arpc_1(sk, arqc, arc))
    assert emv.verify_arqc(imk, pan, psn, signed, session)


def test_session_block_is_one_block() -> None:
    session = emv.AcSession(bytes(16), "6032981234567890", "01", b"\x00\x01")
    with pytest.raises(ValueError):
        session.encrypt_block(bytes(16))


# --- DE 55 parsing: the short loop against pyemv's codec ----------------------------------

from pyemv import tlv as pyemv_tlv  # noqa: E402

_tag_bytes = st.one_of(
    st.sampled_from([bytes.fromhex(t) for t in emv.DE55_TAG_ORDER]),
    st.binary(min_size=1, max_size=3),
)
_tlv_items = st.tuples(_tag_bytes, st.binary(max_size=20)).map(
    lambda tv: tv[0] + bytes([len(tv[1])]) + tv[1])
#: Mostly well-formed TLV (what terminals send), then cut, spliced or random bytes.
_de55s = st.one_of(
    st.lists(_tlv_items, max_size=15).map(b"".join),
    st.tuples(st.lists(_tlv_items, max_size=15).map(b"".join),
              st.integers(min_value=0, max_value=300)).map(lambda d: d[0][: d[1]]),
    st.lists(st.one_of(_tlv_items, st.binary(max_size=4)), max_size=10).map(b"".join),
    st.binary(max_size=80),
)


def _pyemv_parse(de55: bytes) -> dict[str, bytes] | type[emv.IccDataError]:
    try:
        decoded = pyemv_tlv.decode(de55, flatten=True)
    except (ValueError, IndexError, TypeError):
        return emv.IccDataError
    return {str(tag): bytes(value) for tag, value in decoded.items()}


@settings(max_examples=1500, deadline=None)
@given(de55=_de55s)
def test_parse_icc_data_equals_pyemv(de55: bytes) -> None:
    """Same tags and values (or the same refusal) as pyemv's BER-TLV decoder."""
    expected = _pyemv_parse(de55)
    if expected is emv.IccDataError:
        with pytest.raises(emv.IccDataError):
            emv.parse_icc_data(de55)
    else:
        got = emv.parse_icc_data(de55)
        assert got == expected
        assert list(got) == list(expected)  # in the same order
        assert all(type(value) is bytes for value in got.values())


def test_the_short_loop_reads_what_terminals_send() -> None:
    """The fast path is taken for HOST_SPEC §7's DE 55, and only pyemv reads the rest."""
    de55 = emv.build_icc_data({"9F26": bytes(8), "9F27": b"\x80", "9F36": b"\x00\x07",
                               "82": b"\x39\x00", "9F02": bytes(6)})
    assert emv._parse_simple_tlv(de55) == _pyemv_parse(de55)
    assert emv._parse_simple_tlv(bytes.fromhex("E0035F2A00")) is None  # constructed
    assert emv._parse_simple_tlv(bytes.fromhex("9F02810100")) is None  # long-form length
    assert emv._parse_simple_tlv(bytes.fromhex("9F8101020000")) is None  # three-byte tag
    assert emv._parse_simple_tlv(bytes.fromhex("9F02030000")) is None  # cut short


@pytest.mark.parametrize("psn", ["z=", "0G"])
def test_a_psn_no_key_derives_from_is_a_failed_check_not_a_crash(psn: str) -> None:
    """``Checks.arqc_ok`` never raises: a PSN that is not hex fails the ARQC check (RC 63),
    as it did before the session key was shared, instead of raising out of the decision.
    The codec already refuses non-digit DE 23, so this guards the check's own contract;
    both cases raise ValueError from the session-key derivation without the guard."""
    from switch.core.verify import Checks
    from switch.security.keyring import Keyring
    from switch.settings import Settings

    checks = Checks(Keyring.from_settings(Settings()))
    tags = {"9F36": b"\x00\x01", "9F26": bytes(8), "82": b"\x39\x00"}
    assert checks.arqc_ok("6032981234567890", psn, b"de55", tags) is False
    assert emv.verify_arqc(bytes(16), "6032981234567890", psn, tags) is False
