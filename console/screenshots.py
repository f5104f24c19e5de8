"""``python -m console.screenshots OUT_DIR``: screenshots of the console's pages
(``console-reports.png``, ``console-transactions.png``, ``console-transaction.png``,
``console-complaints.png``, ``console-kpm.png``) over a small demo world made for the
purpose in a temporary directory: real purchases through the switch's host (and a
wrong PIN), complaints, and the demo users.  Needs Debian's Chromium and Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from console.app import create_app
from console.browser import chromium, log_in, serving
from console.seed import seed_demo_users
from console.settings import ConsoleSettings
from switch.admin.complaints import assign_complaint, move_complaint, open_complaint
from switch.admin.demo import build_world, seed_database
from switch.clock import FixedClock
from switch.db.schema import open_database
from switch.host.service import HostService
from switch.ledger.postings import allocate_period
from switch.protocol.bpnt import BasketLine
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink

DAY = "2026-11-23"
BASKETS = [[BasketLine("BRS005", 1, 6_500_000), BasketLine("TLR010", 1, 2_800_000)],
           [BasketLine("BRS010", 1, 14_000_000)],
           [BasketLine("AYM010", 2, 3_800_000), BasketLine("SYR001", 3, 300_000)]]


def _world(workdir: Path) -> tuple[Settings, FixedClock, list[str]]:
    settings = Settings(database_url=f"sqlite:///{workdir / 'screens.db'}")
    keys = Keyring.from_settings(settings)
    db = open_database(settings.database_url)
    demo = build_world(kpm_count=30, terminal_count=4)
    clock = FixedClock()
    seed_database(db, keys, demo, clock=clock)
    allocate_period(db, DAY[:7], settings.period_amount_sen)
    host = HostService(db, settings, clock)
    terminals = [t for t in demo.terminals if t.label == "ok"]
    cards = demo.cards_labelled("ok")
    edcs = [Edc(EdcConfig(t.tid, t.mid, t.tmk), DirectLink(host.process_unit),
                EmulatedReader(), clock=clock) for t in terminals]
    for edc in edcs:
        edc.logon()
    rrns = []
    for n in range(14):
        edc, card = edcs[n % len(edcs)], cards[n]
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        reader.swap(KksCard(profile_for(card.pan, card.psn, card.expiry_yymm, keys.imk_ac)))
        pin = card.pin if n != 5 else "000000" if card.pin != "000000" else "111111"
        result = edc.purchase(BASKETS[n % len(BASKETS)], pin)
        entry = edc.batch.find_purchase(result.invoice) if result.invoice else None
        if entry is not None:
            rrns.append(entry.rrn)
        clock.advance(timedelta(minutes=9))
    with db.transaction() as session:
        first = open_complaint(session, keys, actor="console:operator", source="kpm",
                               subject="Paid but received no eggs", rrn=rrns[0], clock=clock)
        assign_complaint(session, keys, first.id, assignee="operator", actor="console:operator",
                         clock=clock)
        move_complaint(session, keys, first.id, to_status="investigating",
                       note="called the e-warong", actor="console:operator", clock=clock)
        open_complaint(session, keys, actor="console:ewarong", source="ewarong",
                       subject="Card read errors at the EDC", mid=terminals[0].mid,
                       clock=clock)
        open_complaint(session, keys, actor="console:operator", source="operator",
                       subject="Rice price above reference", rrn=rrns[2], clock=clock)
    db.dispose()
    return settings, clock, rrns


def take(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings, clock, rrns = _world(Path(tmp))
        app = create_app(ConsoleSettings(), settings, clock=clock)
        logins = {role: (name, password) for name, role, password
                  in seed_demo_users(app.state.db, app.state.keys, clock)}
        shots = [("console-reports.png", f"/reports?date={DAY}"),
                 ("console-transactions.png", "/transactions"),
                 ("console-transaction.png", f"/transactions/{rrns[0]}"),
                 ("console-complaints.png", "/complaints"),
                 ("console-kpm.png", "/kpm/1")]
        written = []
        with serving(app) as base, chromium(Path(tmp) / "profile") as context:
            page = context.new_page()
            log_in(page, base, *logins["operator"])
            for name, path in shots:
                page.goto(f"{base}{path}")
                page.screenshot(path=str(out_dir / name), full_page=name != "console-reports.png")
                written.append(out_dir / name)
        app.state.db.dispose()
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m console.screenshots OUT_DIR", file=sys.stderr)
        return 2
    for path in take(Path(argv[0])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
