"""The console under test: a seeded world (real purchases through the switch's host),
the demo users, and a TestClient logged in as one of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from console.app import create_app
from console.seed import seed_demo_users
from console.settings import ConsoleSettings
from switch.admin.complaints import open_complaint
from switch.db.tables import (
    AuditRecord,
    Card,
    Complaint,
    ComplaintEvent,
    ConsoleApiToken,
    ConsoleUser,
    Delivery,
    Ewarong,
    Kpm,
    RequestRecord,
    Stock,
    StockReceipt,
    Terminal,
)
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.settings import Settings
from tests.world import HostWorld, make_world

RICE = BasketLine("BRS005", 1, 6_500_000)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class ConsoleWorld:
    world: HostWorld
    app: Starlette
    settings: Settings
    console_settings: ConsoleSettings
    #: role -> (username, password)
    logins: dict[str, tuple[str, str]]
    #: An approved purchase at the ewarong user's e-warong, and one at another.
    own_rrn: str
    other_rrn: str
    own_mid: str
    other_mid: str
    complaint_own: int
    complaint_other: int

    def client(self, role: str | None = None) -> TestClient:
        client = TestClient(self.app, base_url="http://127.0.0.1")
        if role is not None:
            login(client, *self.logins[role])
        return client


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"csrf": csrf_of(page.text), "username": username,
                                         "password": password}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def token_of(client: TestClient, path: str = "/transactions") -> str:
    return csrf_of(client.get(path).text)


def _purchase(world: HostWorld, terminal_index: int, card_index: int) -> str:
    edc = world.edc(world.terminal(index=terminal_index))
    card = world.card(index=card_index)
    world.insert(edc, card)
    edc.logon()
    result = edc.purchase([RICE], card.pin)
    assert result.rc == codes.APPROVED, result
    entry = edc.batch.find_purchase(result.invoice)
    assert entry is not None
    return entry.rrn


def make_console_world(tmp_path: Path, url: str | None = None,
                       **console_changes: Any) -> Iterator[ConsoleWorld]:
    """Four terminals over two e-warongs; a purchase at each e-warong; a complaint about
    each; the demo users; the app over the same database."""
    for world in make_world(tmp_path, url, terminal_count=4):
        own_rrn = _purchase(world, 0, 0)   # EDC00001 at EWARONG00000001
        other_rrn = _purchase(world, 1, 1)  # EDC00002 at EWARONG00000002
        with world.db.transaction() as session:
            own_mid, other_mid = [t.mid for t in world.demo.terminals[:2]]
            own = open_complaint(session, world.keys, actor="test", source="kpm",
                                 subject="rice short", rrn=own_rrn, clock=world.clock)
            other = open_complaint(session, world.keys, actor="test", source="kpm",
                                   subject="eggs broken", rrn=other_rrn, clock=world.clock)
        logins = {role: (username, password) for username, role, password
                  in seed_demo_users(world.db, world.keys, world.clock)}
        db_url = world.db.engine.url.render_as_string(hide_password=False)
        settings = Settings(database_url=db_url)
        console_settings = ConsoleSettings(**console_changes)
        app = create_app(console_settings, settings, clock=world.clock)
        yield ConsoleWorld(world, app, settings, console_settings, logins, own_rrn, other_rrn,
                           own_mid, other_mid, own.id, other.id)
        app.state.db.dispose()


def fingerprint(world: HostWorld) -> dict[str, Any]:
    """Everything a console change could touch (not the audit trail)."""
    with world.db.transaction() as session:
        return {
            "cards": session.execute(select(Card.id, Card.status).order_by(Card.id)).all(),
            "kpm": session.execute(select(Kpm.id, Kpm.status).order_by(Kpm.id)).all(),
            "terminals": session.execute(select(
                Terminal.tid, Terminal.status, Terminal.tpk_wrapped, Terminal.tak_wrapped)
                .order_by(Terminal.tid)).all(),
            "users": session.execute(select(ConsoleUser.username, ConsoleUser.role,
                                            ConsoleUser.active, ConsoleUser.password_hash)
                                     .order_by(ConsoleUser.id)).all(),
            "tokens": session.execute(select(ConsoleApiToken.id, ConsoleApiToken.revoked_at)
                                      .order_by(ConsoleApiToken.id)).all(),
            "stock": session.execute(select(Stock.ewarong_id, Stock.item_code, Stock.quantity)
                                     .order_by(Stock.ewarong_id, Stock.item_code)).all(),
            "receipts": session.scalar(select(func.count()).select_from(StockReceipt)),
            "deliveries": session.execute(select(Delivery.record_id)).all(),
            "complaints": session.execute(select(Complaint.id, Complaint.status,
                                                 Complaint.assignee).order_by(Complaint.id)
                                          ).all(),
            "complaint_events": session.scalar(select(func.count())
                                               .select_from(ComplaintEvent)),
            "records": session.scalar(select(func.count()).select_from(RequestRecord)),
        }


def audit_tail(world: HostWorld, after_seq: int = 0) -> list[AuditRecord]:
    with world.db.transaction() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.seq > after_seq)
                                    .order_by(AuditRecord.seq)))


def last_seq(world: HostWorld) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.max(AuditRecord.seq))) or 0)


def ids(world: HostWorld) -> dict[str, Any]:
    """Rows the probes address: a KPM, its card, a terminal, a token, a user."""
    with world.db.transaction() as session:
        kpm_id = session.scalar(select(Kpm.id).order_by(Kpm.id))
        card_id = session.scalar(select(Card.id).where(Card.kpm_id == kpm_id))
        user_id = session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == "auditor"))
        mid = session.scalar(select(Ewarong.mid).order_by(Ewarong.mid))
    return {"kpm_id": kpm_id, "card_id": card_id, "tid": world.terminal().tid,
            "user_id": user_id, "mid": mid}
