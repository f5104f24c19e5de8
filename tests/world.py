"""A small real world for tests: SQLite file, seeded demo data, real EDCs and cards.

The ``world`` fixture (tests/conftest.py) checks the money invariant after every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import DemoCard, DemoTerminal, DemoWorld, build_world, seed_database
from switch.clock import FixedClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import allocate_period
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink, Faults, FaultyLink

PERIOD_SEN = 20_000_000


@dataclass
class HostWorld:
    db: Database
    host: HostService
    demo: DemoWorld
    clock: FixedClock
    keys: Keyring
    cards: dict[str, KksCard]

    def card(self, label: str = "ok", index: int = 0) -> DemoCard:
        return self.demo.cards_labelled(label)[index]

    def terminal(self, label: str = "ok", index: int = 0) -> DemoTerminal:
        return [t for t in self.demo.terminals if t.label == label][index]

    def edc(self, terminal: DemoTerminal | None = None, faults: Faults | None = None) -> Edc:
        terminal = terminal or self.terminal()
        link = FaultyLink(DirectLink(self.host.process_unit), faults)
        config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk)
        return Edc(config, link, EmulatedReader(), clock=self.clock)

    def edc_with_card(self, label: str = "ok", index: int = 0) -> tuple[Edc, DemoCard]:
        """A fresh EDC on the first active terminal with a ``label`` card inserted."""
        edc, card = self.edc(), self.card(label, index)
        self.insert(edc, card)
        return edc, card

    def insert(self, edc: Edc, demo: DemoCard) -> None:
        if demo.pan not in self.cards:
            profile = profile_for(demo.pan, demo.psn, demo.expiry_yymm, self.keys.imk_ac)
            self.cards[demo.pan] = KksCard(profile)
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        reader.swap(self.cards[demo.pan])

    def balance_sen(self, demo: DemoCard) -> int:
        """The wallet balance straight from the ledger."""
        from sqlalchemy import select

        from switch.db.tables import Account, Card, Kpm
        from switch.security.keys import pan_token

        with self.db.transaction() as session:
            balance = session.scalar(
                select(Account.balance_sen)
                .join(Kpm, Kpm.wallet_account_id == Account.id)
                .join(Card, Card.kpm_id == Kpm.id)
                .where(Card.pan_token == pan_token(self.keys.pan_token_key, demo.pan))
            )
        assert balance is not None
        return int(balance)


def make_world(tmp_path: Path, url: str | None = None, *, kpm_count: int = 12,
               terminal_count: int = 2, **settings_changes: Any) -> Iterator[HostWorld]:
    """The world on SQLite in ``tmp_path``, or on the (empty) database at ``url``."""
    settings = Settings(database_url=url or f"sqlite:///{tmp_path / 'host.db'}",
                        **settings_changes)
    keys = Keyring.from_settings(settings)
    db = open_database(settings.database_url)
    demo = build_world(kpm_count=kpm_count, terminal_count=terminal_count)
    clock = FixedClock()
    seed_database(db, keys, demo, clock=clock)
    allocate_period(db, "2026-11", PERIOD_SEN)
    yield HostWorld(db, HostService(db, settings, clock), demo, clock, keys, {})
    report = check_invariants(db)
    db.dispose()
    assert report.ok, report.summary()
