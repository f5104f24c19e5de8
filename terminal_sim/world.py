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
from typing import Any

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import CATALOG, PRICES_SEN, DemoCard, DemoTerminal, DemoWorld
from switch.protocol.bpnt import BasketLine
from terminal_sim.batch import card_ref
from terminal_sim.card_reader import CardReader, EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Faults, FaultyLink, Link, TcpLink
from terminal_sim.links import make_link, shared_per_line

ALLOWED_ITEMS = [code for code, _name, _cat, allowed in CATALOG if allowed]
SPARE_KEY = "_spare_cards"
#: The cards' ATCs by card_ref: a card's counter lives in the card, and the host refuses
#: an ATC it has seen (63), so a card used again in a later run must carry on from it.
ATC_KEY = "_card_atc"
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
    #: Where each EDC's STAN, batch (invoice counter, batch number, transactions) and
    #: pending reversal survive between runs (a real EDC keeps them in flash): without
    #: it a second ``edc-sim`` run would reuse STANs and get RC 94, and could not void
    #: or settle what an earlier run did.
    state_path: Path | None = None
    #: ``tcp://``, ``mqtt://`` or ``serial:`` (terminal_sim.links); ``None``: TCP to
    #: ``host:port``.
    link_url: str | None = None
    _cards: dict[str, KksCard] = field(default_factory=dict)
    _edcs: dict[str, Edc] = field(default_factory=dict)
    _faults: dict[str, Faults] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _spare_used: int | None = None
    _shared_link: Link | None = None
    #: ``emulated`` (in process) or ``pcsc[:NAME]``: every EDC reads through one vpcd slot
    #: whose card this world changes (terminal_sim.pcsc_reader.VirtualSlot).
    reader: str = "emulated"
    _slot: Any = None

    def card(self, demo: DemoCard) -> KksCard:
        with self._lock:
            if demo.pan not in self._cards:
                atc = int(self._saved_counters().get(ATC_KEY, {}).get(card_ref(demo.pan), 0))
                profile = profile_for(demo.pan, demo.psn, demo.expiry_yymm, self.imk_ac,
                                      initial_atc=atc)
                self._cards[demo.pan] = KksCard(profile)
            return self._cards[demo.pan]

    def demo_card(self, fingerprint: str) -> DemoCard | None:
        """The card whose :func:`~terminal_sim.batch.card_ref` is ``fingerprint`` (the
        batch keeps no clear PAN): the card a void must present again."""
        return next((c for c in self.world.cards if card_ref(c.pan) == fingerprint), None)

    def edc(self, terminal: DemoTerminal) -> Edc:
        with self._lock:
            if terminal.tid not in self._edcs:
                faults = Faults()
                link = FaultyLink(self._link(terminal.tid), faults)
                config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk,
                                   timeout_s=self.timeout_s)
                edc = Edc(config, link, self._new_reader(), on_screen=self.on_screen)
                edc.restore_state(self._saved_counters().get(terminal.tid, {}))
                self._edcs[terminal.tid] = edc
                self._faults[terminal.tid] = faults
            return self._edcs[terminal.tid]

    def _link(self, tid: str) -> Link:
        if self.link_url is None:
            return TcpLink(self.host, self.port)
        if not shared_per_line(self.link_url):
            return make_link(self.link_url, tid)
        if self._shared_link is None:  # one serial line: terminals on it take turns
            self._shared_link = make_link(self.link_url, tid)
        return _Unclosed(self._shared_link)

    def faults(self, terminal: DemoTerminal) -> Faults:
        self.edc(terminal)
        return self._faults[terminal.tid]

    def _new_reader(self) -> CardReader:
        from terminal_sim.pcsc_reader import VirtualSlot, parse_reader_spec

        name = parse_reader_spec(self.reader)
        if name is None:
            return EmulatedReader()
        if self._slot is None:
            self._slot = VirtualSlot(name)
        reader: CardReader = self._slot.reader
        return reader

    def insert(self, edc: Edc, demo: DemoCard) -> None:
        if self._slot is not None:
            self._slot.insert(self.card(demo))
            return
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

    def _saved_counters(self) -> dict[str, dict[str, Any]]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        saved: dict[str, dict[str, Any]] = json.loads(self.state_path.read_text())
        return saved

    def save(self) -> None:
        """Write every EDC's state to ``state_path`` (also done by :meth:`close`)."""
        if self.state_path is None:
            return
        counters = self._saved_counters()
        counters.update({tid: e.saved_state() for tid, e in self._edcs.items()})
        if self._spare_used is not None:
            counters[SPARE_KEY] = {"used": self._spare_used}
        atcs = counters.setdefault(ATC_KEY, {})
        atcs.update({card_ref(pan): card.atc for pan, card in self._cards.items() if card.atc})
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        temporary.write_text(json.dumps(counters, indent=1))
        temporary.replace(self.state_path)

    def close(self) -> None:
        for edc in self._edcs.values():
            edc.link.close()
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        if self._shared_link is not None:
            self._shared_link.close()
            self._shared_link = None
        self.save()


class _Unclosed:
    """A shared link as seen by one EDC: closing the EDC leaves the line open."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        return self.inner.exchange(unit, timeout_s)

    def close(self) -> None:
        pass
