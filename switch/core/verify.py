"""The one place where MAC (HOST_SPEC §6), PIN (§6) and ARQC (§7) are verified, and
where the ARPC is made.

:class:`Checks` memoizes each check keyed by **all** of its inputs (the clear keys,
the bytes checked, the PIN offset), so an answer taken from the memo is exactly the
answer a fresh computation would give: if a logon changed a key or an admin changed
a PIN offset in between, the key differs and the check runs again.  That is what
lets the host run a batch's checks early, outside the writer lock
(``group_commit_precheck``, :func:`switch.core.precheck.warm`), without the decision
depending on it.  The memo lives for one batch.  Pure: cryptography only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from switch.protocol.message import Message
from switch.security import emv, mac
from switch.security.keyring import Keyring
from switch.security.pin import verify_pin_block

TAG_91 = b"\x91\x0a"
#: EMV Book 3 Table 14: cryptogram type in the top two bits of CID (9F27).
CID_TYPE_MASK = 0xC0
CID_ARQC = 0x80


@dataclass
class Checks:
    """One batch's memo of MAC, PIN and ARQC results."""

    keys: Keyring
    _macs: dict[tuple[bytes, bytes], bool] = field(default_factory=dict)
    _pins: dict[tuple[bytes, bytes, str, str], bool] = field(default_factory=dict)
    _arqcs: dict[tuple[str, str, bytes], bool] = field(default_factory=dict)
    #: The AC session key of each (PAN, PSN, ATC) met: derived once for the ARQC check
    #: and the ARPC of the same request.
    _sessions: dict[tuple[str, str, bytes], emv.AcSession] = field(default_factory=dict)

    def mac_ok(self, tak: bytes, raw: bytes) -> bool:
        key = (tak, raw)
        if key not in self._macs:
            self._macs[key] = mac.verify(tak, raw)
        return self._macs[key]

    def pin_ok(self, tpk: bytes, pin_block: bytes, pan: str, offset: str) -> bool:
        key = (tpk, pin_block, pan, offset)
        if key not in self._pins:
            self._pins[key] = verify_pin_block(tpk, self.keys.pvk, pin_block, pan, offset)
        return self._pins[key]

    def arqc_ok(self, pan: str, psn: str, de55: bytes, tags: Mapping[str, bytes]) -> bool:
        """``tags`` must be ``emv.parse_icc_data(de55)`` (the memo is keyed by ``de55``)."""
        key = (pan, psn, de55)
        if key not in self._arqcs:
            atc = tags.get("9F36")
            try:
                session = (self._session(pan, psn, bytes(atc))
                           if atc is not None and len(atc) == 2 else None)
            except ValueError:  # a PAN or PSN no key derives from: verify_arqc refuses it
                session = None
            self._arqcs[key] = emv.verify_arqc(self.keys.imk_ac, pan, psn, tags, session)
        return self._arqcs[key]

    def issuer_authentication(self, pan: str, cryptogram: Cryptogram, rc: str) -> bytes:
        """DE 55 tag 91: ARPC (method 1) + ARC, for a cryptogram that verified."""
        arc = rc.encode()
        atc = cryptogram.tags.get("9F36")
        session = (self._session(pan, cryptogram.psn, bytes(atc))
                   if atc is not None and len(atc) == 2 else None)
        arpc = emv.compute_arpc(self.keys.imk_ac, pan, cryptogram.psn, cryptogram.tags, arc,
                                session)
        return TAG_91 + emv.build_tag_91(arpc, arc)

    def _session(self, pan: str, psn: str, atc: bytes) -> emv.AcSession:
        key = (pan, psn, atc)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = emv.AcSession(self.keys.imk_ac, pan, psn, atc)
        return session


@dataclass(frozen=True)
class Cryptogram:
    """An ARQC that verified: its ATC and tags (for the ARPC) and the PSN used."""

    atc: int
    tags: Mapping[str, bytes]
    psn: str


def check_arqc(checks: Checks, request: Message, pan: str, psn_on_file: str,
               last_atc: int | None) -> Cryptogram | str:
    """HOST_SPEC §7: the verified cryptogram, or why it is refused (RC 63): it does
    not verify, it is not an ARQC, or its ATC is not above the last one seen."""
    de55 = request.binary(55)
    try:
        tags = emv.parse_icc_data(de55)
    except emv.IccDataError:
        return "DE 55 is not valid TLV"
    psn = (request.opt_text(23) or psn_on_file)[-2:]
    if not checks.arqc_ok(pan, psn, de55, tags):
        return "ARQC does not verify"
    cid = tags.get("9F27", b"")
    if len(cid) != 1 or cid[0] & CID_TYPE_MASK != CID_ARQC:
        # An AAC (card declined) or TC sent online: never authorise on it (EMV Book 3 §10.8).
        return f"cryptogram type {cid.hex() or 'missing'} is not an ARQC"
    atc = int.from_bytes(tags["9F36"], "big")
    if last_atc is not None and atc <= last_atc:
        return f"ATC {atc} replayed (last seen {last_atc})"
    return Cryptogram(atc, tags, psn)
