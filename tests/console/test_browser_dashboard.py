"""The dashboard in a real headless Chromium: each of the four roles logs in and sees
its dashboard update while simulated EDCs (terminal_sim) buy through a real switch;
the ewarong user sees only its e-warong.  ``BPNT_DASHBOARD_SCREENSHOT=path`` also
saves the admin's dashboard, taken while the traffic runs (docs/img/)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from console.browser import CHROMIUM_FLAGS
from terminal_sim.fleet import FleetReport, run_fleet
from tests.console.browser_world import DashboardWorld, dashboard_world
from tests.console.live import CHROMIUM, require_chromium

ROLES = ("admin", "operator", "auditor", "ewarong")
UPDATE_TIMEOUT_S = 60.0

pytestmark = pytest.mark.browser


def _log_in(page: Page, world: DashboardWorld, role: str) -> None:
    username, password = world.logins[role]
    page.goto(f"{world.console_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#dashboard")


def _tile(page: Page, name: str) -> int:
    return int(page.inner_text(f"[data-tile={name}]"))


def _wait_for_tile(page: Page, name: str, done: Callable[[int], bool], what: str) -> None:
    """Until the DOM's tile ``name`` is ``done`` (read from Python: the console's CSP
    refuses the string evaluation ``wait_for_function`` uses, rightly)."""
    deadline = time.monotonic() + UPDATE_TIMEOUT_S
    while not done(_tile(page, name)):
        assert time.monotonic() < deadline, f"{what}: the page shows {_tile(page, name)}"
        page.wait_for_timeout(200)


def test_every_role_sees_its_dashboard_move_with_edc_traffic(tmp_path: Path) -> None:
    require_chromium()
    with dashboard_world(tmp_path) as world, sync_playwright() as playwright:
        # One context per role (one session each): ``launch``, whose every run gets a
        # fresh, empty profile directory from Playwright (it passes --user-data-dir).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        pages: dict[str, Page] = {}
        errors: list[str] = []
        for role in ROLES:
            page = browser.new_context(viewport={"width": 1440, "height": 1800}).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text)
                    if m.type == "error" and "Failed to load resource" not in m.text else None)
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            _log_in(page, world, role)
            pages[role] = page
        before = {role: _tile(page, "approved_hour") for role, page in pages.items()}
        assert set(before.values()) == {0}
        report = FleetReport()

        def traffic() -> None:
            report.merge(run_fleet(world.sim, transactions=160))

        driver = threading.Thread(target=traffic, name="edc-fleet")
        driver.start()
        try:
            # while the EDCs still buy: the counter moves in every role's page
            for role, page in pages.items():
                _wait_for_tile(page, "approved_hour", lambda n: n > 0,
                               f"{role}'s dashboard did not move")
            shot = os.environ.get("BPNT_DASHBOARD_SCREENSHOT")
            if shot:
                _screenshot(pages["admin"], Path(shot), driver)
        finally:
            driver.join(timeout=300)
        assert not driver.is_alive() and report.by_rc["00"] > 0, report.by_rc
        total, own = world.approved(), world.approved(world.ewarong_mid)
        assert 0 < own < total
        for role in ("admin", "operator", "auditor"):
            _wait_for_tile(pages[role], "approved_hour", lambda n: n == total,
                           f"{role} should see all {total} approvals")
        _wait_for_tile(pages["ewarong"], "approved_hour", lambda n: n == own,
                       f"the ewarong user should see its {own} approvals")
        shop = pages["ewarong"]
        assert shop.eval_on_selector_all(
            "#ewarongs tbody tr td:first-child", "cells => cells.map(c => c.textContent)") \
            == [world.ewarong_mid]
        assert shop.locator("#chart-transport").is_hidden()  # no system-wide figures
        admin = pages["admin"]
        assert admin.locator("#dash-warning").is_hidden()  # the switch's /metrics answers
        # the transport chart has the switch's TCP requests, the latency chart p50/p99
        assert "tcp" in admin.evaluate(
            "window.Chart.getChart('chart-transport').data.datasets.map(d => d.label)")
        assert admin.evaluate(
            "window.Chart.getChart('chart-latency').data.datasets.map(d => d.label)") \
            == ["p50", "p99"]
        # the charts were drawn by Chart.js from /static/vendor (not a CDN)
        assert pages["admin"].evaluate("typeof window.Chart") == "function"
        assert errors == []
        browser.close()


def _screenshot(page: Page, path: Path, driver: threading.Thread) -> None:
    """The admin's dashboard a few seconds into the traffic (charts with some history)."""
    deadline = time.monotonic() + 20
    while driver.is_alive() and time.monotonic() < deadline \
            and _tile(page, "approved_hour") < 60:
        page.wait_for_timeout(500)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
