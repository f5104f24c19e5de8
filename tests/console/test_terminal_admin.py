"""The admin's terminal forms act on the real switch: a reset of the working keys makes
the EDC's next purchase fail until it logs on again; a disabled terminal is declined.
Both audited as ``console:admin``; both engines."""

from __future__ import annotations

from sqlalchemy import select

from switch.db.tables import Terminal
from switch.protocol import codes
from tests.console.helpers import RICE, ConsoleWorld, audit_tail, last_seq, token_of


def _post(cw: ConsoleWorld, path: str, form: dict[str, str]) -> int:
    admin = cw.client("admin")
    return admin.post(path, data={**form, "csrf": token_of(admin, "/")},
                      follow_redirects=False).status_code


def test_reset_keys_then_logon_again(console: ConsoleWorld) -> None:
    edc = console.edcs[0]
    tid = edc.config.tid
    card = console.world.card(index=2)
    console.world.insert(edc, card)
    seq = last_seq(console.world)
    assert _post(console, f"/terminals/{tid}/reset-keys", {"reason": "EDC stolen"}) == 303
    with console.world.db.transaction() as session:
        row = session.scalars(select(Terminal).where(Terminal.tid == tid)).one()
        assert row.tpk_wrapped is None and row.tak_wrapped is None
    assert edc.purchase([RICE], card.pin).rc != codes.APPROVED
    edc.logon()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    [reset] = [r for r in audit_tail(console.world, seq) if r.action == "terminal.keys_reset"]
    assert (reset.actor, reset.subject) == ("console:admin", tid)


def test_a_disabled_terminal_is_declined(console: ConsoleWorld) -> None:
    edc = console.edcs[0]
    card = console.world.card(index=3)
    console.world.insert(edc, card)
    path = f"/terminals/{edc.config.tid}/status"
    assert _post(console, path, {"status": "inactive", "reason": "audit visit"}) == 303
    assert edc.purchase([RICE], card.pin).rc != codes.APPROVED
    assert _post(console, path, {"status": "active", "reason": "back"}) == 303
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
