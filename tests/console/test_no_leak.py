"""No page, API answer, CSV export or log line holds a clear PAN (with or without
separators), a PIN block, or a key: every role crawls every page it can reach from the
nav and the links, plus every report's CSV and API answer, after real purchases
through the switch's host (tests/world.py).  The demo world knows every secret
(switch/admin/demo.py), so the test knows what to look for."""

from __future__ import annotations

import logging
import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
from starlette.testclient import TestClient

from console.permissions import ROLES
from switch.reports.daily import DAILY_REPORTS
from switch.security.pin import encrypt_pin_block
from tests.console.helpers import ConsoleWorld, token_of
from tests.console.probes import DAY

HREF = re.compile(r'href="([^"#]+)"')
MAX_PAGES = 300


def _secrets(cw: ConsoleWorld) -> dict[str, str]:
    """What must never show, by a name for the failure message."""
    found: dict[str, str] = {}
    for card in cw.world.demo.cards:
        pan = card.pan
        found[f"PAN {card.label}"] = pan
        found["PAN spaced"] = " ".join(pan[i:i + 4] for i in range(0, len(pan), 4))
        found["PAN dashed"] = "-".join(pan[i:i + 4] for i in range(0, len(pan), 4))
    settings = cw.settings
    for name in ("kek_hex", "pan_token_key_hex", "pvk_hex", "imk_ac_hex", "audit_key_hex"):
        found[name] = getattr(settings, name)
    found["console secret"] = cw.console_settings.secret_hex
    for terminal in cw.world.demo.terminals:
        found[f"TMK {terminal.tid}"] = terminal.tmk.hex()
    for n, edc in enumerate(cw.edcs):
        tpk, tak = edc._tpk, edc._tak  # the EDC's working keys (a logon gave them)
        assert tpk is not None and tak is not None
        found[f"TPK {n}"], found[f"TAK {n}"] = tpk.hex(), tak.hex()
        card = cw.world.card(index=n)
        found[f"PIN block {n}"] = encrypt_pin_block(tpk, card.pin, card.pan).hex()
    return found


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    upper = text.upper()
    return [name for name, value in secrets.items() if value.upper() in upper]


def _crawl(client: TestClient, start: list[str]) -> dict[str, str]:
    """Every same-origin GET reachable from ``start`` (at most MAX_PAGES)."""
    seen: dict[str, str] = {}
    queue = deque(start)
    while queue and len(seen) < MAX_PAGES:
        path = queue.popleft()
        if path in seen:
            continue
        answer = client.get(path, follow_redirects=False)
        seen[path] = answer.text
        if "text/html" not in answer.headers.get("content-type", ""):
            continue
        for href in HREF.findall(answer.text):
            target = urljoin(path, href.replace("&amp;", "&"))
            parts = urlsplit(target)
            if not parts.netloc and target.startswith("/") and not target.startswith("/static"):
                queue.append(target)
    return seen


@pytest.mark.parametrize("role", ROLES)
def test_no_pan_pin_block_or_key_anywhere(console: ConsoleWorld, role: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = _secrets(console)
    client = console.client(role)
    full_pan = console.world.card(index=0).pan
    start = ["/", f"/transactions?pan={full_pan}", f"/transactions?pan={full_pan[-4:]}",
             f"/transactions/{console.own_rrn}", f"/transactions/{console.other_rrn}",
             f"/reports?date={DAY}", f"/reports?date={DAY}&print=1", f"/settlements?date={DAY}",
             "/metrics", *(f"/reports/{name}.csv?date={DAY}" for name in DAILY_REPORTS)]
    pages = _crawl(client, start)
    assert len(pages) > 15
    if role != "ewarong":  # a complaint taken on the phone names the card by its PAN
        client.post("/complaints/new", data={"csrf": token_of(client, "/complaints"),
                                             "source": "operator", "pan": full_pan,
                                             "subject": "card swallowed"})
        pages.update(_crawl(client, ["/complaints", "/audit"]))
    headers = {"authorization": f"Bearer {_api_token(console)}"}
    api = console.client()
    for path in ("/api/v1/transactions", "/api/v1/complaints", "/api/v1/stock",
                 f"/api/v1/transactions?pan={full_pan}",
                 *(f"/api/v1/reports/{name}?date={DAY}" for name in DAILY_REPORTS)):
        pages[path] = api.get(path, headers=headers).text
    leaked = {path: found for path, text in pages.items() if (found := _leaks(text, secrets))}
    pins = [re.compile(rf"(?<![0-9]){console.world.card(index=n).pin}(?![0-9])")
            for n in range(len(console.edcs))]
    leaked.update({f"{path} (PIN)": ["PIN"] for path, text in pages.items()
                   if any(pin.search(text) for pin in pins)})
    assert leaked == {}
    assert _leaks(caplog.text, secrets) == []
    assert full_pan[:6] in pages[f"/transactions?pan={full_pan}"]  # masked, it was found


def _api_token(cw: ConsoleWorld) -> str:
    from console.tokens import create_token
    from switch.db.tables import ConsoleUser

    with cw.world.db.transaction() as session:
        from sqlalchemy import select

        user_id = session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == "auditor"))
        assert user_id is not None
        _, clear = create_token(session, user_id=user_id, label="leak-test")
    return clear
