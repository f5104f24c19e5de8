"""``card-emu serve``: an emulated card in a vpcd slot, driven from standard input.

Commands, one per line (FAILURES F6 by hand)::

    insert PAN [PROFILE]        put a fresh card in the slot (profiles: card_emulator.presets)
    remove                      pull the card
    swap PAN [PROFILE]          pull the card and insert another
    fault NAME [DELAY_S] [INS]  none | mute | 6f00 | slow | pull-gen-ac | wrong-atr | garbage-tlv
    status                      what is in the slot
    quit                        pull the card and stop

Cards inserted again by PAN keep their ATC and PIN try counter (one card per PAN).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import Any, TextIO

from card_emulator.card import KksCard
from card_emulator.faults import ChipFault, FaultPlan
from card_emulator.presets import PRESETS, card_for
from card_emulator.vicc import ViccBridge, port_for_slot

__all__ = ["Console", "add_serve_parser", "run_serve"]


def add_serve_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a card in the vpcd reader 'Virtual PCD 00 0N'")
    serve.add_argument("--slot", type=int, default=0, help="vpcd slot 0 or 1 (default 0)")
    serve.add_argument("--card", metavar="PAN", default=None, help="card to insert at start")
    serve.add_argument("--profile", choices=PRESETS, default="kks")
    serve.add_argument("--psn", default="01")
    serve.add_argument("--expiry", default=None, help="expiry YYMM (default per profile)")
    serve.add_argument("--fault", choices=[f.value for f in ChipFault], default="none")
    serve.add_argument("--delay-s", type=float, default=2.0,
                       help="slow card delay per APDU / mute card hold time")
    serve.add_argument("--vpcd-host", default="127.0.0.1")
    serve.add_argument("--imk-hex", default=None, help="issuer master key for AC (hex)")


class Console:
    """The stdin command interpreter, apart from I/O so tests can drive it."""

    def __init__(self, bridge: ViccBridge, imk_ac: bytes, *, psn: str = "01",
                 expiry_yymm: str | None = None) -> None:
        self.bridge = bridge
        self._imk_ac = imk_ac
        self._psn = psn
        self._expiry = expiry_yymm
        self._cards: dict[tuple[str, str], KksCard] = {}

    def card(self, pan: str, profile: str = "kks") -> KksCard:
        key = (pan, profile)
        if key not in self._cards:
            self._cards[key] = card_for(profile, pan, self._imk_ac, psn=self._psn,
                                        expiry_yymm=self._expiry)
        return self._cards[key]

    def status(self) -> str:
        card = self.bridge.card
        what = "empty" if card is None else f"{card.profile.masked_pan} {card.profile.kind}"
        return (f"slot port {self.bridge.port}: {what}, fault {self.bridge.plan.fault.value}, "
                f"ATC {card.atc if card else '-'}, {self.bridge.messages} messages")

    def execute(self, line: str) -> str | None:
        """Run one command; returns the reply to print, ``None`` on ``quit``."""
        words = line.split()
        if not words:
            return ""
        command, args = words[0].lower(), words[1:]
        try:
            if command in ("insert", "swap") and 1 <= len(args) <= 2:
                preset = args[1] if len(args) == 2 else "kks"
                card = self.card(args[0], preset)
                self.bridge.swap(card)
                return f"inserted {card.profile.masked_pan} ({preset})"
            if command == "remove" and not args:
                old = self.bridge.remove()
                return f"removed {old.profile.masked_pan}" if old else "slot was empty"
            if command == "fault" and 1 <= len(args) <= 3:
                plan = FaultPlan(ChipFault(args[0]),
                                 delay_s=float(args[1]) if len(args) > 1 else 2.0,
                                 only_ins=int(args[2], 16) if len(args) > 2 else None)
                self.bridge.set_fault(plan)
                return f"fault {plan.fault.value}"
            if command == "status" and not args:
                return self.status()
            if command == "quit":
                return None
        except ValueError as exc:
            return f"error: {exc}"
        return (f"error: unknown command {line.strip()!r} "
                "(insert, remove, swap, fault, status, quit)")


def _repl(console: Console, stdin: TextIO, stdout: TextIO, done: threading.Event) -> None:
    for line in stdin:
        reply = console.execute(line)
        if reply is None:
            break
        if reply:
            print(reply, file=stdout, flush=True)
    else:
        return  # end of input: keep serving until interrupted
    done.set()


def run_serve(args: argparse.Namespace, imk_ac: bytes) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        port = port_for_slot(args.slot)
        plan = FaultPlan(ChipFault(args.fault), delay_s=args.delay_s)
    except ValueError as exc:
        print(f"card-emu serve: {exc}", file=sys.stderr)
        return 2
    bridge = ViccBridge(port, args.vpcd_host, plan=plan)
    console = Console(bridge, imk_ac, psn=args.psn, expiry_yymm=args.expiry)
    if args.card:
        try:
            bridge.insert(console.card(args.card, args.profile))
        except ValueError as exc:
            print(f"card-emu serve: {exc}", file=sys.stderr)
            return 2
    done = threading.Event()
    with bridge:
        print(f"serving Virtual PCD 00 {args.slot:02d} (port {port}); "
              f"commands: insert, remove, swap, fault, status, quit", flush=True)
        threading.Thread(target=_repl, args=(console, sys.stdin, sys.stdout, done),
                         daemon=True).start()
        try:
            while not done.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        bridge.remove()
    return 0
