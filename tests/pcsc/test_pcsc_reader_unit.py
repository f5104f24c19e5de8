"""PcscReader without pcscd: the PC/SC error table, ATR checks, pyscard missing."""

from __future__ import annotations

import sys

import pytest

from card_emulator.card import ATR
from card_emulator.faults import WRONG_ATR
from terminal_sim import pcsc_reader as pr
from terminal_sim.card_reader import (
    CardRemovedError,
    CardUnreadableError,
    NoCardError,
    ReaderError,
    ReaderUnavailableError,
)


@pytest.mark.parametrize(
    ("code", "connected", "kind"),
    [
        (pr.SCARD_E_NO_SERVICE, False, ReaderUnavailableError),
        (pr.SCARD_E_SERVICE_STOPPED, True, ReaderUnavailableError),
        (pr.SCARD_E_UNKNOWN_READER, False, ReaderUnavailableError),
        (pr.SCARD_E_READER_UNAVAILABLE, True, ReaderUnavailableError),
        (pr.SCARD_E_NO_SMARTCARD, False, NoCardError),
        (pr.SCARD_E_NO_SMARTCARD, True, CardRemovedError),
        (pr.SCARD_W_REMOVED_CARD, False, NoCardError),
        (pr.SCARD_W_REMOVED_CARD, True, CardRemovedError),
        (pr.SCARD_W_UNRESPONSIVE_CARD, False, CardUnreadableError),
        (pr.SCARD_W_UNPOWERED_CARD, True, CardUnreadableError),
        (pr.SCARD_W_RESET_CARD, True, CardUnreadableError),
        (pr.SCARD_E_NOT_TRANSACTED, True, CardUnreadableError),
        (0x80100099, True, ReaderUnavailableError),  # unknown: never a crash
        (pr.SCARD_E_NO_SERVICE - 0x100000000, False, ReaderUnavailableError),  # signed
    ],
)
def test_error_table(code: int, connected: bool, kind: type[ReaderError]) -> None:
    error = pr.error_for(code, "x", connected=connected)
    assert type(error) is kind and error.edc_message == kind.default_edc_message


def test_pyscard_exceptions_map_by_hresult_and_by_type() -> None:
    class EstablishContextException(Exception):  # pyscard's: not a SmartcardException
        hresult = -1

    class NoCardException(Exception):
        hresult = -1

    class CardConnectionException(Exception):
        def __init__(self, hresult: int) -> None:
            super().__init__("x")
            self.hresult = hresult

    assert isinstance(pr.error_from_exception(EstablishContextException(), "ctx"),
                      ReaderUnavailableError)
    assert isinstance(pr.error_from_exception(NoCardException(), "c"), NoCardError)
    assert isinstance(pr.error_from_exception(NoCardException(), "c", connected=True),
                      CardRemovedError)
    removed = CardConnectionException(pr.SCARD_W_REMOVED_CARD)
    assert isinstance(pr.error_from_exception(removed, "t", connected=True), CardRemovedError)
    assert isinstance(pr.error_from_exception(RuntimeError("swig"), "t"),
                      ReaderUnavailableError)


def test_check_atr() -> None:
    pr.check_atr(ATR)
    pr.check_atr(bytes.fromhex("3B6500002063CB6600"))  # T=0 only: no TCK
    for bad in (WRONG_ATR, b"", b"\x3b", bytes.fromhex("FF8D80"), ATR[:-1], ATR + b"\x00"):
        with pytest.raises(CardUnreadableError):
            pr.check_atr(bad)


def test_pyscard_missing_is_a_reader_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)
    assert not pr.pyscard_available()
    with pytest.raises(ReaderUnavailableError, match="pip install"):
        pr.PcscReader("Virtual PCD 00 00").power_on()
    assert pr.PcscReader("x").transmit.__name__ == "transmit"
    with pytest.raises(ValueError):
        pr.PcscReader(apdu_timeout_s=0)
