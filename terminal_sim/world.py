"""The simulator's side of the demo world: cards in hand, EDCs on counters.

One :class:`~terminal_sim.edc.Edc` per TID for the life of the world, so STANs
stay unique per terminal (HOST_SPEC §3), and one :class:`KksCard` per PAN, so
the card's ATC only moves forward.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import CATALOG, PRICES_SEN, DemoCard, DemoTerminal, DemoWorld
from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Faults, FaultyLink, TcpLink

ALLOWED_ITEMS = [code for code, _name, _cat, allowed in CATALOG if allowed]
SPARE_KEY = "_spare_cards"
FORBIDDEN_ITEMS = [code for code, _name, _cat, allowed in CATALOG if not allowed]


def random_basket(rng: random.Random, *, max_lines: int = 3) -> list[BasketLine]:
    """A BPNT basket of allowed food: usually rice, plus eggs, protein, greens, fruit."""
    codes = rng.sample(ALLOWED_ITEMS, rng.randint(1, max_lines))
    return [BasketLine(code, rng.randint(1, 2), PRICES_SEN[code]) for code in codes]


@dataclass
class SimWorld:
    world: DemoWorld
    imk_ac: bytes = field(repr=False)
    host: str
    port: int
    timeout_s: float = 5.0
    on_screen: Callable[[str], None] | None = None
    #: Where STAN and invoice counters survive between runs (a real EDC keeps them in
    #: flash): without it a second ``edc-sim`` run would reuse STANs and get RC 94.
    state_path: Path | None = None
    _cards: dict[str, KksCard] = field(default_factory=dict)
    _edcs: dict[str, Edc] = field(default_factory=dict)
    _faults: dict[str, Faults] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _spare_used: int | None = None

    def card(self, demo: DemoCard) -> KksCard:
        with self._lock:
            if demo.pan not in self._cards:
                profile = profile_for(demo.pan, demo.psn, demo.expiry_yymm, self.imk_ac)
                self._cards[demo.pan] = KksCard(profile)
            return self._cards[demo.pan]

    def edc(self, terminal: DemoTerminal) -> Edc:
        with self._lock:
            if terminal.tid not in self._edcs:
                faults = Faults()
                link = FaultyLink(TcpLink(self.host, self.port), faults)
                config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk,
                                   timeout_s=self.timeout_s)
                edc = Edc(config, link, EmulatedReader(), on_screen=self.on_screen)
                counters = self._saved_counters().get(terminal.tid, {})
                edc.stan = int(counters.get("stan", 0))
                edc.invoice = int(counters.get("invoice", 0))
                self._edcs[terminal.tid] = edc
                self._faults[terminal.tid] = faults
            return self._edcs[terminal.tid]

    def faults(self, terminal: DemoTerminal) -> Faults:
        self.edc(terminal)
        return self._faults[terminal.tid]

    def insert(self, edc: Edc, demo: DemoCard) -> None:
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        reader.swap(self.card(demo))

    def take_spare_card(self) -> DemoCard:
        """A card no earlier scenario has touched (taken from the end of the list; the
        fleet uses the start), remembered across runs through ``state_path``."""
        with self._lock:
            if self._spare_used is None:
                self._spare_used = self._saved_counters().get(SPARE_KEY, {}).get("used", 0)
            spare = list(reversed(self.world.cards_labelled("ok")))
            card = spare[self._spare_used % len(spare)]
            self._spare_used += 1
            return card

    def _saved_counters(self) -> dict[str, dict[str, int]]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        saved: dict[str, dict[str, int]] = json.loads(self.state_path.read_text())
        return saved

    def close(self) -> None:
        for edc in self._edcs.values():
            edc.link.close()
        if self.state_path is not None:
            counters = self._saved_counters()
            counters.update({tid: {"stan": e.stan, "invoice": e.invoice}
                             for tid, e in self._edcs.items()})
            if self._spare_used is not None:
                counters[SPARE_KEY] = {"used": self._spare_used}
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps(counters, indent=1))
