"""In a real headless Chromium (Debian's, through Playwright's ``executable_path``):
every role logs in through the login form and sees the nav of its permissions; then,
one test per role and forbidden form action (from ``console.permissions.PERMISSIONS``)
and per act on another e-warong's data: the browser submits the form with the
session's CSRF token, and gets the 403 page, the database is unchanged, and one
``console.denied`` audit record names the user and the action."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from console.permissions import PERMISSIONS, ROLES, allowed
from console.views import NAV
from tests.console.helpers import (
    ConsoleWorld,
    audit_tail,
    fingerprint,
    last_seq,
    make_console_world,
)
from tests.console.live import SUBMIT_FORM, chromium, log_in, require_chromium, serving
from tests.console.probes import Probe, probes

pytestmark = pytest.mark.browser

#: The probes that are forms (POSTs), by permission; their data are fixed per world
#: (probes() of any world give the same paths), so the params are built on the names.
FORM_PERMISSIONS = ("change_card_status", "change_kpm_status", "change_terminal_status",
                    "reset_terminal_keys", "manage_users", "manage_api_tokens",
                    "receive_stock", "confirm_delivery", "verify_audit", "open_complaint",
                    "handle_complaint")
FORBIDDEN = [(role, permission) for role in ROLES for permission in FORM_PERMISSIONS
             if role not in PERMISSIONS[permission]]
#: An ewarong user's own-role acts on another e-warong's data.
OTHER_EWARONG = ("confirm_delivery", "open_complaint")


@dataclass
class Browser:
    cw: ConsoleWorld
    base: str
    context: Any


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("browser")
    for cw in make_console_world(tmp / "world"):
        with serving(cw.app) as base, chromium(tmp / "profile") as context:
            yield Browser(cw, base, context)


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    browser.context.clear_cookies()
    page = browser.context.new_page()
    yield page
    page.close()


def _submit(page: Any, base: str, probe: Probe, fields: dict[str, str]) -> Any:
    csrf = page.locator("input[name=csrf]").first.input_value()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.evaluate(SUBMIT_FORM, [f"{base}{probe.path}", {**fields, "csrf": csrf}])
    page.wait_for_load_state()
    return answer.value


def _assert_refused(browser: Browser, page: Any, role: str, probe: Probe,
                    fields: dict[str, str], reason: str | None = None) -> None:
    cw = browser.cw
    username, password = cw.logins[role]
    log_in(page, browser.base, username, password)
    before, seq = fingerprint(cw.world), last_seq(cw.world)
    response = _submit(page, browser.base, probe, fields)
    assert response.status == 403
    assert page.locator("h1").inner_text() == "403 Forbidden"
    assert page.locator("code.action").inner_text() == probe.permission
    assert fingerprint(cw.world) == before
    [denied] = audit_tail(cw.world, seq)
    detail = json.loads(denied.detail)
    assert (denied.action, denied.actor) == ("console.denied", f"console:{username}")
    assert (detail["user"], detail["role"], detail["action"], detail["path"]) == \
        (username, role, probe.permission, probe.path)
    if reason is not None:
        assert detail["reason"] == reason


@pytest.mark.parametrize("role", ROLES)
def test_log_in_and_see_the_roles_nav(browser: Browser, page: Any, role: str) -> None:
    username, password = browser.cw.logins[role]
    log_in(page, browser.base, username, password)
    shown = [a.get_attribute("href") for a in page.locator("header nav a").all()]
    assert shown == [path for path, _, permission in NAV if allowed(role, permission)]
    assert page.locator(".username").inner_text() == username


@pytest.mark.parametrize(("role", "permission"), FORBIDDEN,
                         ids=[f"{role}-{permission}" for role, permission in FORBIDDEN])
def test_forbidden_form_action(browser: Browser, page: Any, role: str,
                               permission: str) -> None:
    probe = probes(browser.cw)[permission]
    _assert_refused(browser, page, role, probe, probe.form)


@pytest.mark.parametrize("permission", OTHER_EWARONG)
def test_ewarong_acting_on_another_ewarongs_data(browser: Browser, page: Any,
                                                 permission: str) -> None:
    cw = browser.cw
    if permission == "confirm_delivery":
        probe = Probe(permission, "POST", f"/transactions/{cw.other_rrn}/deliver")
    else:
        probe = Probe(permission, "POST", "/complaints/new",
                      {"rrn": cw.other_rrn, "subject": "not ours"})
    _assert_refused(browser, page, "ewarong", probe, probe.form, "another e-warong's data")


def test_a_form_the_role_may_use_goes_through(browser: Browser, page: Any) -> None:
    """The operator blocks a card through the KPM page's own form (the happy path)."""
    cw = browser.cw
    username, password = cw.logins["operator"]
    log_in(page, browser.base, username, password)
    page.goto(f"{browser.base}/kpm/2")
    row = page.locator("table.data tbody tr").first
    row.locator("select[name=status]").select_option("lost")
    row.locator("input[name=reason]").fill("reported lost on the phone")
    seq = last_seq(cw.world)
    with page.expect_navigation():
        row.locator("button").click()
    assert page.locator("td.card-status").first.inner_text() == "lost"
    [change] = audit_tail(cw.world, seq)
    assert (change.actor, change.action) == (f"console:{username}", "card.status")


def test_there_is_a_browser_test_per_forbidden_form(browser: Browser) -> None:
    posts = {p for p, probe in probes(browser.cw).items() if probe.method == "POST"}
    assert posts == set(FORM_PERMISSIONS)
