"""Logins, sessions, lock-out, the per-address limiter and CSRF, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from switch.db.tables import Card, ConsoleUser
from tests.console.helpers import (
    ConsoleWorld,
    audit_tail,
    csrf_of,
    fingerprint,
    ids,
    last_seq,
    make_console_world,
    token_of,
)


def _try(client: TestClient, username: str, password: str) -> int:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": username,
                                       "password": password},
                       follow_redirects=False).status_code


def test_login_logout_and_the_cookie(console: ConsoleWorld) -> None:
    client = console.client()
    assert client.get("/transactions", follow_redirects=False).headers["location"] == "/login"
    username, password = console.logins["operator"]
    page = client.get("/login")
    answer = client.post("/login", data={"csrf": csrf_of(page.text), "username": username,
                                         "password": password}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert password not in answer.headers["set-cookie"]
    home = client.get("/")
    assert home.status_code == 200 and "operator" in home.text
    assert 'href="/users"' not in home.text  # the nav shows only what the role may see
    client.post("/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_and_unknown_user_say_the_same(console: ConsoleWorld) -> None:
    client = console.client()
    assert _try(client, "operator", "not-the-password") == 401
    assert _try(client, "nobody", "not-the-password") == 401
    with console.world.db.transaction() as session:
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == "operator")
                              ).one()
        assert row.failed_logins == 1


def test_five_failures_lock_the_account_for_fifteen_minutes(console: ConsoleWorld) -> None:
    client = console.client()
    username, password = console.logins["auditor"]
    seq = last_seq(console.world)
    for _ in range(5):
        assert _try(client, username, "wrong-password") == 401
    [locked] = [r for r in audit_tail(console.world, seq) if r.action == "console.locked"]
    assert locked.subject == username
    assert _try(client, username, password) == 401  # locked: even the right password
    console.world.clock.advance(timedelta(minutes=16))
    assert _try(client, username, password) == 303


@pytest.fixture
def strict_limiter(tmp_path: Path) -> Iterator[ConsoleWorld]:
    yield from make_console_world(tmp_path, address_max_failures=3)


def test_an_address_with_many_failures_is_refused(strict_limiter: ConsoleWorld) -> None:
    client = strict_limiter.client()
    for name in ("a1", "a2", "a3"):
        assert _try(client, name, "wrong-password") == 401
    username, password = strict_limiter.logins["admin"]
    assert _try(client, username, password) == 429


def test_csrf_missing_or_wrong_is_refused_and_changes_nothing(console: ConsoleWorld) -> None:
    client = console.client("operator")
    card_id = ids(console.world)["card_id"]
    before, seq = fingerprint(console.world), last_seq(console.world)
    form = {"status": "blocked", "reason": "csrf test"}
    for data in (form, {**form, "csrf": "forged"}):
        answer = client.post(f"/cards/{card_id}/status", data=data, follow_redirects=False)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert fingerprint(console.world) == before
    assert [r.action for r in audit_tail(console.world, seq)] == ["console.denied"] * 2
    good = client.post(f"/cards/{card_id}/status",
                       data={**form, "csrf": token_of(client)}, follow_redirects=False)
    assert good.status_code == 303
    with console.world.db.transaction() as session:
        assert session.get(Card, card_id).status == "blocked"  # type: ignore[union-attr]


def test_login_needs_the_csrf_token(console: ConsoleWorld) -> None:
    client = console.client()
    username, password = console.logins["admin"]
    answer = client.post("/login", data={"username": username, "password": password},
                         follow_redirects=False)
    assert answer.status_code == 403


def test_every_post_route_checks_csrf(sqlite_console: ConsoleWorld) -> None:
    """Whatever the route, a POST without the token is a 403 before anything else."""
    from starlette.routing import Route

    client = sqlite_console.client("admin")
    posts = [r.path for r in sqlite_console.app.routes
             if isinstance(r, Route) and r.methods and "POST" in r.methods]
    assert len(posts) >= 14
    before = fingerprint(sqlite_console.world)
    for path in posts:
        concrete = path.replace("{", "").replace("}", "")
        for name, value in (("rrn", sqlite_console.own_rrn), ("kpm_id", "1"), ("card_id", "1"),
                            ("tid", "EDC00001"), ("complaint_id", "1")):
            concrete = concrete.replace(name, value)
        answer = client.post(concrete, data={"status": "blocked", "reason": "x"},
                             follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
    assert fingerprint(sqlite_console.world) == before


def test_a_deactivated_user_is_out_at_once(console: ConsoleWorld) -> None:
    operator = console.client("operator")
    admin = console.client("admin")
    with console.world.db.transaction() as session:
        user_id = session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == "operator"))
    answer = admin.post("/users/active", data={"csrf": token_of(admin, "/users"),
                                               "user_id": str(user_id), "active": "no"},
                        follow_redirects=False)
    assert answer.status_code == 303
    assert operator.get("/transactions", follow_redirects=False).status_code == 303
    login_page = console.client()
    assert _try(login_page, *console.logins["operator"]) == 401
