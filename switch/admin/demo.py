"""The demo world of ``make run``: KPM with valid NIKs, cards, e-warongs, terminals.

Deterministic from a seed.  The clear PINs and TMKs it returns live only in the
simulator's memory (they are what a cardholder knows and what a key ceremony
loads into an EDC); the database holds PIN offsets and wrapped keys.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import psec.des

from switch.admin.registry import Registry
from switch.admin.stock import receive_stock
from switch.clock import Clock
from switch.db.engine import Database
from switch.db.tables import ReferencePrice
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring

DEMO_BIN = "603298"
#: (code, name, category, allowed): BPNT buys rice, eggs, protein, vegetables, fruit.
CATALOG: list[tuple[str, str, str, bool]] = [
    ("BRS005", "Beras medium 5 kg", "rice", True),
    ("BRS010", "Beras premium 10 kg", "rice", True),
    ("TLR010", "Telur ayam 1 kg", "eggs", True),
    ("AYM010", "Daging ayam 1 kg", "protein", True),
    ("IKN005", "Ikan kembung 0,5 kg", "protein", True),
    ("TMP001", "Tempe", "protein", True),
    ("KCG005", "Kacang hijau 0,5 kg", "protein", True),
    ("SYR001", "Sayur bayam", "vegetables", True),
    ("KTG010", "Kentang 1 kg", "vegetables", True),
    ("PSG001", "Pisang 1 sisir", "fruit", True),
    ("JRK010", "Jeruk 1 kg", "fruit", True),
    ("MNY002", "Minyak goreng 2 L", "other", False),
    ("GLA010", "Gula pasir 1 kg", "other", False),
    ("ROK016", "Rokok 16 batang", "other", False),
]
#: Reference unit prices in sen.
PRICES_SEN = {
    "BRS005": 6_500_000, "BRS010": 14_000_000, "TLR010": 2_800_000, "AYM010": 3_800_000,
    "IKN005": 2_000_000, "TMP001": 500_000, "KCG005": 1_200_000, "SYR001": 300_000,
    "KTG010": 1_800_000, "PSG001": 2_500_000, "JRK010": 2_200_000, "MNY002": 3_600_000,
    "GLA010": 1_700_000, "ROK016": 3_000_000,
}
_NAMES = ["Siti", "Sri", "Wati", "Nur", "Dewi", "Ani", "Yati", "Rini", "Tuti", "Eka",
          "Budi", "Agus", "Slamet", "Joko", "Asep", "Dedi", "Ujang", "Made", "Wayan", "Ahmad"]
_REGIONS = ["320101", "327301", "330101", "350101", "357801", "520101", "610101", "730101"]


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit.

    >>> luhn_complete("603298000000001")
    '6032980000000010'
    """
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return prefix + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class DemoCard:
    pan: str
    pin: str = field(repr=False)
    psn: str = "01"
    expiry_yymm: str = "3012"
    #: Why the card exists: "ok", "expired", "blocked", "lost", "stolen", "dormant",
    #: "kpm_inactive", "unknown" (never registered).
    label: str = "ok"

    def __repr__(self) -> str:
        return f"DemoCard(pan={mask_pan(self.pan)!r}, label={self.label!r})"


@dataclass(frozen=True)
class DemoTerminal:
    tid: str
    mid: str
    tmk: bytes = field(repr=False)
    label: str = "ok"  # "ok", "inactive", "ewarong_inactive", "unknown"


@dataclass
class DemoWorld:
    cards: list[DemoCard]
    terminals: list[DemoTerminal]

    def cards_labelled(self, label: str) -> list[DemoCard]:
        return [c for c in self.cards if c.label == label]

    def terminal_labelled(self, label: str) -> DemoTerminal:
        return next(t for t in self.terminals if t.label == label)


def _nik(rng: random.Random, serial: int) -> str:
    day = rng.randint(1, 28) + (40 if rng.random() < 0.6 else 0)
    return f"{rng.choice(_REGIONS)}{day:02d}{rng.randint(1, 12):02d}{rng.randint(50, 99):02d}" \
        f"{serial % 9999 + 1:04d}"


def build_world(kpm_count: int = 200, terminal_count: int = 8, seed: int = 8583) -> DemoWorld:
    rng = random.Random(seed)
    special = ["expired", "blocked", "lost", "stolen", "dormant", "kpm_inactive", "unknown"]
    cards = []
    for i in range(kpm_count + len(special)):
        label = special[i - kpm_count] if i >= kpm_count else "ok"
        pan = luhn_complete(f"{DEMO_BIN}{i + 1:09d}")
        expiry = "2405" if label == "expired" else f"{29 + i % 3}{rng.randint(1, 12):02d}"
        cards.append(DemoCard(pan, f"{rng.randrange(10**6):06d}", "01", expiry, label))
    terminals = []
    for i in range(terminal_count + 3):
        label = "ok" if i < terminal_count else ["inactive", "ewarong_inactive", "unknown"][
            i - terminal_count]
        ewarong_no = 99 if label == "ewarong_inactive" else i % max(1, terminal_count // 2) + 1
        tmk = psec.des.adjust_key_parity(rng.randbytes(16))
        terminals.append(DemoTerminal(f"EDC{i + 1:05d}", f"EWARONG{ewarong_no:08d}", tmk, label))
    return DemoWorld(cards, terminals)


#: Units of every allowed item each demo e-warong receives at seeding (a receipt, so
#: stock conservation holds from the start): enough for any bench run here.
DEMO_STOCK_UNITS = 100_000


def seed_database(db: Database, keys: Keyring, world: DemoWorld, *,
                  stock_units: int = DEMO_STOCK_UNITS, clock: Clock | None = None) -> None:
    """Register the world (on an empty database; every row audited as ``demo-seed``):
    the catalogue with national reference prices (:data:`PRICES_SEN`), and
    ``stock_units`` of each allowed item at every active e-warong (0: none)."""
    rng = random.Random(1)
    with db.transaction() as session:
        reg = Registry(session, keys, actor="demo-seed", clock=clock)
        for code, name, category, allowed in CATALOG:
            reg.add_item(code=code, name=name, category=category, allowed=allowed)
        session.flush()
        session.add_all(ReferencePrice(item_code=code, region="", unit_price_sen=price)
                        for code, price in PRICES_SEN.items())
        ewarongs = {}
        for term in world.terminals:
            if term.label == "unknown":
                continue
            if term.mid not in ewarongs:
                status = "inactive" if term.label == "ewarong_inactive" else "active"
                ewarongs[term.mid] = reg.register_ewarong(
                    mid=term.mid, name=f"e-Warong {term.mid[-3:]}", status=status
                )
            reg.register_terminal(
                tid=term.tid, ewarong=ewarongs[term.mid], tmk=term.tmk,
                status="inactive" if term.label == "inactive" else "active",
            )
        for n, card in enumerate(world.cards):
            if card.label == "unknown":
                continue
            kpm = reg.register_kpm(
                nik=_nik(rng, n), name=f"{rng.choice(_NAMES)} {n}",
                status="inactive" if card.label == "kpm_inactive" else "active",
            )
            status = card.label if card.label in ("blocked", "lost", "stolen", "dormant") \
                else "active"
            reg.issue_card(kpm=kpm, pan=card.pan, pin=card.pin, psn=card.psn,
                           expiry_yymm=card.expiry_yymm, status=status)
        if stock_units > 0:
            for mid, ewarong in ewarongs.items():
                if ewarong.status != "active":
                    continue
                for code, _name, _category, allowed in CATALOG:
                    if allowed:
                        receive_stock(session, keys, mid=mid, item_code=code,
                                      quantity=stock_units, actor="demo-seed",
                                      reference="demo-seed", clock=clock)
