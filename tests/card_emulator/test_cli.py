"""card-emu command line (card_emulator/cli.py)."""

from __future__ import annotations

import pytest

from card_emulator.card import ATR
from card_emulator.cli import main

PAN = "6013010012345678"
IMK = ["--imk-hex", "0123456789ABCDEFFEDCBA9876543210"]


def test_info_masks_pan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--pan", PAN, *IMK]) == 0
    out = capsys.readouterr().out
    assert "601301******5678" in out and PAN not in out
    assert ATR.hex().upper() in out
    assert "2912" in out


def test_info_uses_settings_key_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--pan", PAN]) == 0
    assert "601301******5678" in capsys.readouterr().out


def test_apdu_sends_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apdu", "--pan", PAN, *IMK, "00A4040007A000000602101000", "80CA9F3600"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "> 00A4040007A000000602101000"
    assert lines[1].startswith("< 6F") and lines[1].endswith("9000")
    assert lines[3] == "< 9F360200009000"


def test_apdu_rejects_non_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apdu", "--pan", PAN, *IMK, "zz"]) == 2


def test_bad_pan_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        main(["info", "--pan", "12", *IMK])
