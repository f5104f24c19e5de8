"""``card-emu``: inspect an emulated KKS card or send it APDUs.

::

    card-emu info --pan 6013010012345678
    card-emu apdu --pan 6013010012345678 00A4040007A0000006021010 80A8000002830000
    card-emu serve --slot 0 --card 6013010012345678 [--profile kks] [--fault mute]

``serve`` puts the card behind pcscd's vpcd reader ``Virtual PCD 00 0N`` (see
docs/PCSC.md) and then reads commands on standard input: ``insert PAN [PROFILE]``,
``remove``, ``swap PAN [PROFILE]``, ``fault NAME [DELAY_S] [INS_HEX]``, ``status``,
``quit``.

The card is personalised from the issuer master key of the switch settings
(``BPNT_IMK_AC_HEX``; demo key by default) unless ``--imk-hex`` is given, so
its cryptograms verify at a switch run with the same settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from card_emulator.card import KksCard
from card_emulator.profile import CardProfile, mask_pan, profile_for

__all__ = ["main"]


def _imk_ac(imk_hex: str | None) -> bytes:
    if imk_hex is None:
        from switch.settings import load_settings

        imk_hex = load_settings().imk_ac_hex
    return bytes.fromhex(imk_hex)


def _profile(args: argparse.Namespace) -> CardProfile:
    return profile_for(args.pan, args.psn, args.expiry, _imk_ac(args.imk_hex))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="card-emu", description="Emulated KKS chip card")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("info", "show the card's masked PAN, expiry and ATR"),
        ("apdu", "send APDUs (hex) in order to a freshly powered card"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--pan", required=True, help="12-19 digit PAN")
        cmd.add_argument("--psn", default="01", help="PAN sequence number (default 01)")
        cmd.add_argument("--expiry", default="2912", help="expiry YYMM (default 2912)")
        cmd.add_argument("--imk-hex", default=None, help="issuer master key for AC (hex)")
    sub.choices["apdu"].add_argument("apdus", nargs="+", metavar="HEX")
    from card_emulator.serve import add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``card-emu`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from card_emulator.serve import run_serve

        return run_serve(args, _imk_ac(args.imk_hex))
    try:
        card = KksCard(_profile(args))
    except ValueError as exc:
        parser.error(str(exc))
    atr = card.power_on()
    if args.command == "info":
        print(f"PAN     {mask_pan(card.profile.pan)}")
        print(f"PSN     {card.profile.psn}")
        print(f"expiry  {card.profile.expiry_yymm}")
        print(f"ATR     {atr.hex().upper()}")
        return 0
    for text in args.apdus:
        try:
            apdu = bytes.fromhex(text)
        except ValueError:
            print(f"not hex: {text!r}", file=sys.stderr)
            return 2
        print(f"> {apdu.hex().upper()}")
        print(f"< {card.handle_apdu(apdu).hex().upper()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
