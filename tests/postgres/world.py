"""A seeded demo world on a PostgreSQL database, and EDCs that talk to it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import DemoCard, DemoTerminal, DemoWorld, build_world, seed_database
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.ledger.postings import allocate_period
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Link, TcpLink
from tests.world import PERIOD_SEN

__all__ = ["PERIOD_SEN", "SeededWorld", "seed", "send_at_once"]


@dataclass
class SeededWorld:
    url: str
    db: Database
    keys: Keyring
    demo: DemoWorld
    cards: dict[str, KksCard] = field(default_factory=dict)

    def terminal(self, index: int = 0) -> DemoTerminal:
        return [t for t in self.demo.terminals if t.label == "ok"][index]

    def card(self, label: str = "ok", index: int = 0) -> DemoCard:
        return self.demo.cards_labelled(label)[index]

    def kks(self, demo: DemoCard) -> KksCard:
        """The emulated chip card of ``demo`` (one per PAN, so its ATC keeps counting)."""
        if demo.pan not in self.cards:
            profile = profile_for(demo.pan, demo.psn, demo.expiry_yymm, self.keys.imk_ac)
            self.cards[demo.pan] = KksCard(profile)
        return self.cards[demo.pan]

    def edc(self, link: Link, demo: DemoCard, terminal: DemoTerminal | None = None) -> Edc:
        terminal = terminal or self.terminal()
        reader = EmulatedReader()
        reader.swap(self.kks(demo))
        return Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=15.0), link,
                   reader)


def seed(url: str, *, writer_lock: bool = True, terminal_count: int = 2) -> SeededWorld:
    """The demo world (12 KPM, ``terminal_count`` active terminals on
    ``terminal_count // 2`` e-warongs) with the period allocated."""
    settings = Settings(database_url=url)
    keys = Keyring.from_settings(settings)
    db = open_database(url, writer_lock=writer_lock)
    demo = build_world(kpm_count=12, terminal_count=terminal_count)
    seed_database(db, keys, demo)
    allocate_period(db, "2026-11", PERIOD_SEN)
    return SeededWorld(url, db, keys, demo)


def send_at_once(sends: list[tuple[TcpLink, bytes]], timeout_s: float) -> list[bytes]:
    """Send each unit on its link from its own thread, released together (a barrier);
    every reply, in order (a missing one fails the test)."""
    barrier = threading.Barrier(len(sends))
    replies: list[bytes | BaseException | None] = [None] * len(sends)

    def run(i: int, link: TcpLink, unit: bytes) -> None:
        try:
            barrier.wait(timeout=timeout_s)
            replies[i] = link.exchange(unit, timeout_s)
        except BaseException as exc:  # reported below, in the test's thread
            replies[i] = exc

    threads = [threading.Thread(target=run, args=(i, link, unit))
               for i, (link, unit) in enumerate(sends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * timeout_s)
        assert not thread.is_alive(), "a switch did not answer in time"
    out = []
    for reply in replies:
        assert isinstance(reply, bytes), f"no reply: {reply!r}"
        out.append(reply)
    return out
