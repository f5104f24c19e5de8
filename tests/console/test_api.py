"""The JSON API: bearer tokens made by an admin (only their SHA-256 stored), the same
roles and e-warong scope as the pages; unknown or revoked tokens are 401."""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select
from starlette.testclient import TestClient

from console.permissions import PERMISSIONS, ROLES
from switch.db.tables import ConsoleApiToken, ConsoleUser
from tests.console.helpers import ConsoleWorld, audit_tail, last_seq, token_of
from tests.console.probes import API_PROBES

TOKEN = re.compile(r'<code class="token">([^<]+)</code>')


def _make_token(cw: ConsoleWorld, admin: TestClient, username: str) -> str:
    with cw.world.db.transaction() as session:
        user_id = session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username))
    page = admin.post("/tokens/add", data={"csrf": token_of(admin, "/tokens"),
                                           "user_id": str(user_id), "label": f"{username}-api"})
    match = TOKEN.search(page.text)
    assert page.status_code == 200 and match
    return match.group(1)


def test_tokens_and_roles(console: ConsoleWorld) -> None:
    admin = console.client("admin")
    api = console.client()
    tokens = {role: _make_token(console, admin, console.logins[role][0]) for role in ROLES}
    with console.world.db.transaction() as session:
        stored = set(session.scalars(select(ConsoleApiToken.token_sha256)))
    assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in tokens.values()}
    assert admin.get("/tokens").text.count("bpnt_") == 0  # never shown again
    for role, token in tokens.items():
        for path, permission in API_PROBES.items():
            seq = last_seq(console.world)
            answer = api.get(path, headers={"authorization": f"Bearer {token}"})
            if role in PERMISSIONS[permission]:
                assert answer.status_code == 200, (role, path, answer.text[:300])
            else:
                assert answer.status_code == 403 and answer.json()["action"] == permission
                [denied] = audit_tail(console.world, seq)
                assert denied.action == "console.denied"
                assert denied.actor == f"console:{console.logins[role][0]}"
    scoped = api.get("/api/v1/transactions",
                     headers={"authorization": f"Bearer {tokens['ewarong']}"}).json()
    assert {t["mid"] for t in scoped["transactions"]} == {console.own_mid}
    stock = api.get("/api/v1/stock", headers={"authorization": f"Bearer {tokens['ewarong']}"})
    assert {row["mid"] for row in stock.json()["stock"]} == {console.own_mid}


def test_unknown_missing_and_revoked_tokens_are_401(console: ConsoleWorld) -> None:
    admin = console.client("admin")
    api = console.client()
    token = _make_token(console, admin, "auditor")
    good = {"authorization": f"Bearer {token}"}
    assert api.get("/api/v1/transactions", headers=good).status_code == 200
    assert api.get("/api/v1/transactions").status_code == 401
    assert api.get("/api/v1/transactions",
                   headers={"authorization": "Bearer bpnt_unknown"}).status_code == 401
    # A session cookie is no key to the API.
    assert admin.get("/api/v1/transactions").status_code == 401
    with console.world.db.transaction() as session:
        token_id = session.scalar(select(ConsoleApiToken.id))
    admin.post("/tokens/revoke", data={"csrf": token_of(admin, "/tokens"),
                                       "token_id": str(token_id)})
    assert api.get("/api/v1/transactions", headers=good).status_code == 401
