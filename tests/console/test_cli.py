"""``bpnt-switch console user add|list``, ``token add`` and ``seed-demo-users``; and the
console's own ``/metrics``."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from switch.cli import main
from switch.db.tables import ConsoleApiToken, ConsoleUser
from tests.console.helpers import ConsoleWorld, login


def _db(cw: ConsoleWorld) -> str:
    return cw.settings.database_url


def test_user_add_list_and_token(sqlite_console: ConsoleWorld,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(sqlite_console)
    assert main(["console", "user", "add", "bob", "--role", "operator", "--db", db]) == 0
    out = capsys.readouterr().out
    password = re.search(r"password: (\S+)", out)
    assert password
    login(sqlite_console.client(), "bob", password.group(1))
    assert main(["console", "user", "add", "shop", "--role", "ewarong", "--db", db]) == 2
    assert "needs the MID" in capsys.readouterr().err
    assert main(["console", "user", "add", "shop", "--role", "ewarong", "--mid",
                 sqlite_console.own_mid, "--db", db]) == 0
    capsys.readouterr()
    assert main(["console", "user", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "bob" in listing and sqlite_console.own_mid in listing
    assert password.group(1) not in listing
    assert main(["console", "token", "add", "bob", "--label", "pull", "--db", db]) == 0
    token = capsys.readouterr().out.rsplit(" ", 1)[1].strip()
    with sqlite_console.world.db.transaction() as session:
        stored = session.scalar(select(ConsoleApiToken.token_sha256)
                                .where(ConsoleApiToken.label == "pull"))
        hashed = session.scalar(select(ConsoleUser.password_hash)
                                .where(ConsoleUser.username == "bob"))
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert hashed is not None and hashed.startswith("$argon2id$")
    api = sqlite_console.client()
    assert api.get("/api/v1/transactions",
                   headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_seed_demo_users_prints_working_logins(sqlite_console: ConsoleWorld,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console", "seed-demo-users", "--db", _db(sqlite_console)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [role for role, _, _ in lines] == ["admin", "operator", "auditor", "ewarong"]
    for _, username, password in lines:
        login(sqlite_console.client(), username, password)


def test_console_metrics(sqlite_console: ConsoleWorld) -> None:
    client = sqlite_console.client("auditor")
    client.get(f"/transactions/{sqlite_console.own_rrn}")
    client.post("/stock/receive", data={"csrf": "x"})
    text = client.get("/metrics").text
    assert 'bpnt_console_requests_total{method="GET",route="/transactions/{rrn}",status="200"}' \
        in text
    assert 'route="/stock/receive",status="403"' in text
    assert "bpnt_console_sse_clients 0.0" in text
    assert "bpnt_console_query_seconds_count" in text
