"""Every permission for every role, from the one table (``console.permissions``): an
allowed act succeeds (and a change is audited as ``console:<username>``); a forbidden
one is a 403 page, changes nothing, and leaves one ``console.denied`` audit record
naming the user, role, action and path.  Both engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.permissions import PERMISSIONS, ROLES, matrix_markdown
from switch.db import audit as chain
from tests.console.helpers import ConsoleWorld, audit_tail, fingerprint, last_seq, token_of
from tests.console.probes import probes

ROOT = Path(__file__).resolve().parents[2]


def test_every_permission_has_a_probe(sqlite_console: ConsoleWorld) -> None:
    assert set(probes(sqlite_console)) == set(PERMISSIONS)


def test_docs_show_the_permission_table() -> None:
    assert matrix_markdown() in (ROOT / "docs" / "CONSOLE.md").read_text()


@pytest.mark.parametrize("role", ROLES)
def test_role_against_every_permission(console: ConsoleWorld, role: str) -> None:
    username = console.logins[role][0]
    client = console.client(role)
    for permission, probe in probes(console).items():
        before, seq = fingerprint(console.world), last_seq(console.world)
        data = {**probe.form, "csrf": token_of(client, "/")} if probe.method == "POST" else None
        answer = client.request(probe.method, probe.path, data=data, follow_redirects=False)
        tail = audit_tail(console.world, seq)
        if role in PERMISSIONS[permission]:
            assert answer.status_code in (200, 303), (role, permission, answer.text[:500])
            if probe.method == "POST" and probe.changes:
                assert tail and all(r.actor == f"console:{username}" for r in tail), \
                    (role, permission, [(r.actor, r.action) for r in tail])
            else:
                assert tail == [], (role, permission)
            continue
        assert answer.status_code == 403, (role, permission, answer.status_code)
        assert "403 Forbidden" in answer.text and permission in answer.text
        assert fingerprint(console.world) == before, (role, permission)
        [denied] = tail
        assert (denied.actor, denied.action, denied.subject) == \
            (f"console:{username}", "console.denied", permission)
        detail = json.loads(denied.detail)
        assert (detail["user"], detail["role"], detail["action"], detail["path"]) == \
            (username, role, permission, probe.path.split("?")[0])
    with console.world.db.transaction() as session:
        assert chain.verify(session, console.world.keys.audit_key).ok
