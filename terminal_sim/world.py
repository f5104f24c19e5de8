"""The simulator's side of the demo world: cards in hand, EDCs on counters.

One :class:`~terminal_sim.edc.Edc` per TID for the life of the world, so STANs
stay unique per terminal (HOST_SPEC §3), and one :class:`KksCard` per PAN, so
the card's ATC only moves forward.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import CATALOG, PRICES_SEN, DemoCard, DemoTerminal, DemoWorld
from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Faults, FaultyLink, TcpLink

ALLOWED_ITEMS = [code for code, _name, _cat, allowed in CATALOG if allowed]
FORBIDDEN_ITEMS = [code for code, _name, _cat, allowed in CATALOG if not allowed]


def random_basket(rng: random.Random, *, max_lines: int = 4) -> list[BasketLine]:
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
    _cards: dict[str, KksCard] = field(default_factory=dict)
    _edcs: dict[str, Edc] = field(default_factory=dict)
    _faults: dict[str, Faults] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
                self._edcs[terminal.tid] = Edc(config, link, EmulatedReader(),
                                               on_screen=self.on_screen)
                self._faults[terminal.tid] = faults
            return self._edcs[terminal.tid]

    def faults(self, terminal: DemoTerminal) -> Faults:
        self.edc(terminal)
        return self._faults[terminal.tid]

    def insert(self, edc: Edc, demo: DemoCard) -> None:
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        reader.swap(self.card(demo))

    def close(self) -> None:
        for edc in self._edcs.values():
            edc.link.close()
