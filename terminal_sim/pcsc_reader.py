"""A real PC/SC card reader through pyscard (``pip install .[pcsc]``), FAILURES F6.

`PcscReader` implements `terminal_sim.card_reader.CardReader` on pcscd: any reader
(a USB CCID reader, or ``Virtual PCD 00 0N`` with the emulated card of
`card_emulator.vicc`).  It uses pyscard's low-level ``smartcard.scard`` API, so every
failure arrives as a PC/SC return code, and `error_for` maps each one (and pyscard's
own exception types) to exactly one `ReaderError` subclass, i.e. one EDC screen:

=====================================================  ==================================
PC/SC (pcsc-lite ``winscard``)                         EDC shows
=====================================================  ==================================
no card on connect (``E_NO_SMARTCARD``, ``W_REMOVED``)  MASUKKAN KARTU (`NoCardError`)
card gone mid-session (``W_REMOVED_CARD``, ``E_NO_SMARTCARD``, empty answer and slot empty)
                                                       KARTU DICABUT (`CardRemovedError`)
mute / unpowered / unsupported / reset card, bad ATR,  KARTU TIDAK TERBACA
empty answer with the card still in, APDU time-out     (`CardUnreadableError`)
pcscd down (``E_NO_SERVICE``, ``E_SERVICE_STOPPED``,   CARD READER ERROR
``EstablishContextException``), reader unknown or      (`ReaderUnavailableError`)
gone (``E_UNKNOWN_READER``, ``E_READER_UNAVAILABLE``),
anything else
=====================================================  ==================================

pyscard is imported lazily: the core package installs and imports without it, and a
missing pyscard is itself a `ReaderUnavailableError`.  Every wait has a timeout: each
APDU runs in a worker thread with ``apdu_timeout_s``, so a card (or a vpcd slot) that
never answers cannot hang the terminal.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from terminal_sim.card_reader import (
    CardRemovedError,
    CardUnreadableError,
    NoCardError,
    ReaderError,
    ReaderUnavailableError,
)

__all__ = ["PcscReader", "check_atr", "error_for", "list_readers", "pyscard_available"]

log = logging.getLogger("bpnt.edc.pcsc")

# PC/SC return codes (pcsc-lite pcsclite.h; the same values as Windows winerror.h).
SCARD_S_SUCCESS: Final[int] = 0x00000000
SCARD_E_CANCELLED: Final[int] = 0x80100002
SCARD_E_INVALID_HANDLE: Final[int] = 0x80100003
SCARD_E_UNKNOWN_READER: Final[int] = 0x80100009
SCARD_E_TIMEOUT: Final[int] = 0x8010000A
SCARD_E_SHARING_VIOLATION: Final[int] = 0x8010000B
SCARD_E_NO_SMARTCARD: Final[int] = 0x8010000C
SCARD_E_PROTO_MISMATCH: Final[int] = 0x8010000F
SCARD_F_COMM_ERROR: Final[int] = 0x80100013
SCARD_E_NOT_TRANSACTED: Final[int] = 0x80100016
SCARD_E_READER_UNAVAILABLE: Final[int] = 0x80100017
SCARD_E_NO_SERVICE: Final[int] = 0x8010001D
SCARD_E_SERVICE_STOPPED: Final[int] = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE: Final[int] = 0x8010002E
SCARD_E_COMM_DATA_LOST: Final[int] = 0x8010002F
SCARD_W_UNSUPPORTED_CARD: Final[int] = 0x80100065
SCARD_W_UNRESPONSIVE_CARD: Final[int] = 0x80100066
SCARD_W_UNPOWERED_CARD: Final[int] = 0x80100067
SCARD_W_RESET_CARD: Final[int] = 0x80100068
SCARD_W_REMOVED_CARD: Final[int] = 0x80100069

# Reader states (SCARD_READERSTATE.dwEventState).
_STATE_UNAVAILABLE: Final[int] = 0x0008
_STATE_EMPTY: Final[int] = 0x0010
_STATE_PRESENT: Final[int] = 0x0020
_STATE_MUTE: Final[int] = 0x0200

_SERVICE_DOWN: Final[frozenset[int]] = frozenset(
    {SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED, SCARD_E_INVALID_HANDLE, SCARD_F_COMM_ERROR}
)
_READER_GONE: Final[frozenset[int]] = frozenset(
    {SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE, SCARD_E_NO_READERS_AVAILABLE,
     SCARD_E_SHARING_VIOLATION}
)
_CARD_GONE: Final[frozenset[int]] = frozenset({SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD})
_CARD_BAD: Final[frozenset[int]] = frozenset(
    {SCARD_W_UNRESPONSIVE_CARD, SCARD_W_UNPOWERED_CARD, SCARD_W_UNSUPPORTED_CARD,
     SCARD_W_RESET_CARD, SCARD_E_PROTO_MISMATCH, SCARD_E_NOT_TRANSACTED,
     SCARD_E_COMM_DATA_LOST, SCARD_E_TIMEOUT, SCARD_E_CANCELLED}
)

#: ISO 7816-3 §8.2: at most 32 bytes after TS.
MAX_ATR_BYTES: Final[int] = 33
#: How long a silent card may take per APDU before the EDC gives up (EMV Book 1 §9.2.2
#: allows a card seconds of waiting time; an EDC's own limit is a few seconds).
DEFAULT_APDU_TIMEOUT_S: Final[float] = 5.0
#: After an empty answer, how long to watch the slot for the card leaving (pcscd polls
#: the vpcd slot every 400 ms).
DEFAULT_REMOVAL_GRACE_S: Final[float] = 1.0
_MAX_WAIT_S: Final[float] = 600.0
_CONNECT_ATTEMPTS: Final[int] = 3
_CONNECT_RETRY_S: Final[float] = 0.2
_VIRTUAL_PREFIX: Final[str] = "Virtual PCD 00 0"


def pyscard_available() -> bool:
    """Whether pyscard (``smartcard.scard``) imports."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        return False
    return True


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as exc:
        raise ReaderUnavailableError("pyscard is not installed (pip install .[pcsc])") from exc
    return scard


def _code(rv: int) -> int:
    return rv & 0xFFFFFFFF


def error_for(hresult: int, during: str, *, connected: bool = False) -> ReaderError:
    """The `ReaderError` for a PC/SC return code; ``connected`` is True inside a card
    session (then a missing card was pulled, not forgotten)."""
    code = _code(hresult)
    detail = f"{during}: PC/SC 0x{code:08X}"
    if code in _SERVICE_DOWN:
        return ReaderUnavailableError(f"{detail} (pcscd not running)")
    if code in _READER_GONE:
        return ReaderUnavailableError(f"{detail} (reader unknown, gone or busy)")
    if code in _CARD_GONE:
        return CardRemovedError(detail) if connected else NoCardError(detail)
    if code in _CARD_BAD:
        return CardUnreadableError(detail)
    return ReaderUnavailableError(detail)


def error_from_exception(exc: BaseException, during: str, *, connected: bool = False
                         ) -> ReaderError:
    """Map any pyscard exception: the ``smartcard.Exceptions`` family, and
    ``smartcard.pcsc.PCSCExceptions`` (``EstablishContextException``,
    ``ListReadersException``), which do *not* derive from ``SmartcardException``."""
    if isinstance(exc, ReaderError):
        return exc
    name = type(exc).__name__
    hresult = getattr(exc, "hresult", -1)
    if isinstance(hresult, int) and hresult not in (-1, 0):
        return error_for(hresult, f"{during} ({name})", connected=connected)
    if name == "EstablishContextException":
        return ReaderUnavailableError(f"{during}: {name} (pcscd not running)")
    if name == "NoCardException":
        return CardRemovedError(during) if connected else NoCardError(during)
    if name in ("NoReadersException", "InvalidReaderException", "ListReadersException"):
        return ReaderUnavailableError(f"{during}: {name}")
    return ReaderUnavailableError(f"{during}: {name}: {exc}")


def check_atr(atr: bytes) -> None:
    """Basic ATR checks of EMV Book 1 §8.3 / ISO 7816-3 §8: TS, length, interface bytes
    and TCK (present and XOR 0 whenever a protocol other than T=0 is indicated)."""
    if not atr or atr[0] not in (0x3B, 0x3F):
        raise CardUnreadableError("ATR: bad TS")
    if len(atr) < 2 or len(atr) > MAX_ATR_BYTES:
        raise CardUnreadableError(f"ATR of {len(atr)} bytes")
    pos, y, historical = 1, atr[1] >> 4, atr[1] & 0x0F
    protocols: set[int] = set()
    while True:
        td = None
        for bit in (0x1, 0x2, 0x4, 0x8):
            if y & bit:
                pos += 1
                if pos >= len(atr):
                    raise CardUnreadableError("ATR: interface bytes truncated")
                if bit == 0x8:
                    td = atr[pos]
        if td is None:
            break
        protocols.add(td & 0x0F)
        y = td >> 4
    body_end = pos + 1 + historical
    needs_tck = bool(protocols - {0})
    if len(atr) != body_end + (1 if needs_tck else 0):
        raise CardUnreadableError("ATR: length does not match T0 and the interface bytes")
    if needs_tck:
        check = 0
        for byte in atr[1:]:
            check ^= byte
        if check:
            raise CardUnreadableError("ATR: TCK does not check")


def list_readers() -> list[str]:
    """Reader names pcscd offers; `ReaderUnavailableError` when pcscd is down."""
    scard = _scard()
    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != SCARD_S_SUCCESS:
        raise error_for(rv, "establish context")
    try:
        rv, names = scard.SCardListReaders(context, [])
        if _code(rv) == SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rv != SCARD_S_SUCCESS:
            raise error_for(rv, "list readers")
        return [str(name) for name in names]
    finally:
        scard.SCardReleaseContext(context)


@dataclass
class _Session:
    """One card session: its own context, so an abandoned APDU cannot block the next."""

    context: Any
    handle: Any = None
    protocol: int = 0
    busy: threading.Thread | None = None


class PcscReader:
    """`CardReader` on a PC/SC reader, by exact name, name prefix or index.

    ``PcscReader("Virtual PCD 00 01")``, ``PcscReader(1)`` (second reader) or
    ``PcscReader(None)`` (the first).  The name is resolved at each `power_on`, so a
    reader that appears later, or pcscd restarted, is picked up.
    """

    def __init__(self, name_or_index: str | int | None = None, *,
                 apdu_timeout_s: float = DEFAULT_APDU_TIMEOUT_S,
                 removal_grace_s: float = DEFAULT_REMOVAL_GRACE_S) -> None:
        if not 0 < apdu_timeout_s <= _MAX_WAIT_S or not 0 <= removal_grace_s <= _MAX_WAIT_S:
            raise ValueError("timeouts must be positive and at most 600 s")
        self.wanted = name_or_index
        self.apdu_timeout_s = apdu_timeout_s
        self.removal_grace_s = removal_grace_s
        self._session: _Session | None = None
        self._last_name: str | None = None

    def __repr__(self) -> str:
        return f"PcscReader({self.wanted!r})"

    # -- reader resolution ------------------------------------------------------------

    def resolve(self) -> str:
        """The reader name to use now; `ReaderUnavailableError` if there is none."""
        names = list_readers()
        wanted = self.wanted
        if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
            index = int(wanted)
            if 0 <= index < len(names):
                return names[index]
            raise ReaderUnavailableError(f"no reader number {index} ({len(names)} present)")
        if wanted is None:
            if names:
                return names[0]
            raise ReaderUnavailableError("no PC/SC reader present")
        matches = [n for n in names if n == wanted] or [n for n in names if n.startswith(wanted)]
        if not matches:
            raise ReaderUnavailableError(f"reader {wanted!r} not present")
        return matches[0]

    # -- presence ---------------------------------------------------------------------------

    def _state(self, timeout_s: float = 0.0, current: int = 0) -> int:
        """The reader's event state, waiting up to ``timeout_s`` for a change from
        ``current`` (SCardGetStatusChange); never waits without a bound."""
        scard = _scard()
        name = self.resolve()
        rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != SCARD_S_SUCCESS:
            raise error_for(rv, "establish context")
        try:
            rv, states = scard.SCardGetStatusChange(
                context, int(timeout_s * 1000), [(name, current)]
            )
            if _code(rv) == SCARD_E_TIMEOUT:
                return current
            if rv != SCARD_S_SUCCESS:
                raise error_for(rv, "reader status")
            state: int = states[0][1]
            if state & _STATE_UNAVAILABLE:
                raise ReaderUnavailableError(f"reader {name!r} unavailable")
            return state
        finally:
            scard.SCardReleaseContext(context)

    def card_present(self) -> bool:
        state = self._state()
        return bool(state & _STATE_PRESENT) and not state & _STATE_EMPTY

    def wait_for_card(self, timeout_s: float) -> bool:
        """Wait until a card is in the slot; False at the deadline."""
        return self._wait(lambda: self.card_present(), timeout_s)

    def wait_for_removal(self, timeout_s: float) -> bool:
        """Wait until the slot is empty; False at the deadline."""
        return self._wait(lambda: not self.card_present(), timeout_s)

    @staticmethod
    def _wait(condition: Any, timeout_s: float) -> bool:
        if not 0 <= timeout_s <= _MAX_WAIT_S:
            raise ValueError("timeout must be 0-600 s")
        deadline = time.monotonic() + timeout_s
        while True:
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # -- card session -------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Connect (pcscd powers the card) and return the checked ATR."""
        self.power_off()
        scard = _scard()
        name = self.resolve()
        try:
            rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != SCARD_S_SUCCESS:
                raise error_for(rv, "establish context")
            session = _Session(context)
            self._session = session
            rv, handle, protocol = self._connect(scard, context, name)
            if rv != SCARD_S_SUCCESS:
                raise error_for(rv, "connect")
            session.handle, session.protocol = handle, protocol
            rv, _reader, _state, _protocol, atr = scard.SCardStatus(handle)
            if rv != SCARD_S_SUCCESS:
                raise error_for(rv, "status", connected=True)
        except ReaderError:
            self.power_off()
            raise
        except Exception as exc:  # a pyscard/SWIG error must not crash the EDC
            self.power_off()
            raise error_from_exception(exc, "power on") from exc
        self._last_name = name
        atr_bytes = bytes(atr)
        check_atr(atr_bytes)
        log.debug("card powered in %s, ATR %s", name, atr_bytes.hex().upper())
        return atr_bytes

    @staticmethod
    def _connect(scard: Any, context: Any, name: str) -> tuple[int, Any, int]:
        """SCardConnect; a card pcscd is still powering up after an insertion answers
        UNPOWERED or RESET for a moment, so those are retried, a bounded number of times."""
        for _attempt in range(_CONNECT_ATTEMPTS):
            rv, handle, protocol = scard.SCardConnect(
                context, name, scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if _code(rv) not in (SCARD_W_UNPOWERED_CARD, SCARD_W_RESET_CARD):
                break
            time.sleep(_CONNECT_RETRY_S)
        return rv, handle, protocol

    def transmit(self, apdu: bytes) -> bytes:
        session = self._session
        if session is None or session.handle is None:
            raise CardUnreadableError("card not powered")
        if session.busy is not None:
            raise CardUnreadableError("the card has not answered the previous command")
        result: list[Any] = []

        def work() -> None:
            try:
                result.append(_scard().SCardTransmit(session.handle, session.protocol,
                                                     list(apdu)))
            except Exception as exc:  # carried to the EDC's thread
                result.append(exc)

        worker = threading.Thread(target=work, name="pcsc-apdu", daemon=True)
        worker.start()
        worker.join(self.apdu_timeout_s)
        if worker.is_alive():
            session.busy = worker
            raise CardUnreadableError(f"card did not answer in {self.apdu_timeout_s:.1f} s")
        outcome = result[0]
        if isinstance(outcome, Exception):
            raise error_from_exception(outcome, "transmit", connected=True) from outcome
        rv, response = outcome
        if rv != SCARD_S_SUCCESS:
            raise error_for(rv, "transmit", connected=True)
        if len(response) < 2:
            # vpcd answers "nothing" with success: the card went mute or was pulled.
            raise self._gone_or_mute()
        return bytes(response)

    def _gone_or_mute(self) -> ReaderError:
        """After an empty answer: pulled if the slot empties within the grace period."""
        if self._wait(lambda: not self.card_present(), self.removal_grace_s):
            return CardRemovedError("card left the slot during the command")
        return CardUnreadableError("card gave no answer")

    def power_off(self) -> None:
        """Disconnect and power the card down; an APDU still pending is left to finish
        in the background (its context released then)."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.busy is not None:
            threading.Thread(target=self._release_later, args=(session,), daemon=True).start()
            return
        self._release(session)

    def _release_later(self, session: _Session) -> None:
        assert session.busy is not None
        session.busy.join(_MAX_WAIT_S)
        if not session.busy.is_alive():
            self._release(session, unpower=False)

    @staticmethod
    def _release(session: _Session, *, unpower: bool = True) -> None:
        try:
            scard = _scard()
            # An abandoned session must not power down a card the next session uses.
            disposition = scard.SCARD_UNPOWER_CARD if unpower else scard.SCARD_LEAVE_CARD
            if session.handle is not None:
                scard.SCardDisconnect(session.handle, disposition)
            scard.SCardReleaseContext(session.context)
        except Exception as exc:  # power off is harmless by contract
            log.debug("power off: %s", exc)

    # -- names -----------------------------------------------------------------------------------

    @staticmethod
    def virtual_name(slot: int) -> str:
        """The vsmartcard reader name of a vpcd slot."""
        return f"{_VIRTUAL_PREFIX}{slot}"


READER_EMULATED: Final[str] = "emulated"


def parse_reader_spec(spec: str) -> str | None:
    """``emulated`` → ``None`` (in process); ``pcsc`` → the first vpcd slot;
    ``pcsc:NAME`` → NAME (exact, prefix, or index)."""
    if spec == READER_EMULATED:
        return None
    kind, _sep, name = spec.partition(":")
    if kind != "pcsc":
        raise ValueError(f"reader must be 'emulated' or 'pcsc[:NAME]', not {spec!r}")
    return name or PcscReader.virtual_name(0)


class VirtualSlot:
    """A vpcd slot driven from this process: a `ViccBridge` puts the simulator's cards in,
    a `PcscReader` reads them through pcscd.  Scenarios use it to change cards."""

    def __init__(self, name: str, *, insert_timeout_s: float = 10.0) -> None:
        from card_emulator.vicc import ViccBridge, port_for_slot

        if not name.startswith(_VIRTUAL_PREFIX) or not name[-1:].isdigit():
            raise ValueError(f"scenarios change cards themselves: they need a vpcd reader "
                             f"({_VIRTUAL_PREFIX}N), not {name!r}")
        self.reader = PcscReader(name)
        self.insert_timeout_s = insert_timeout_s
        self.bridge = ViccBridge(port_for_slot(int(name[-1]))).start()

    def insert(self, card: Any) -> None:
        """Pull whatever is in the slot, insert ``card`` (a `KksCard`), wait until pcscd
        sees it; `ReaderUnavailableError` if it does not within the timeout."""
        if self.bridge.card is not None:
            self.bridge.remove()
            self.reader.wait_for_removal(self.insert_timeout_s)
        self.bridge.insert(card)
        if not self.reader.wait_for_card(self.insert_timeout_s):
            raise ReaderUnavailableError(f"pcscd did not see the card in {self.reader.wanted}")

    def close(self) -> None:
        self.bridge.remove()
        self.bridge.stop()
