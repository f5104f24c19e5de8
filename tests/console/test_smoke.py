"""Every page answers each role that may see it (200), on both engines."""

from __future__ import annotations

from tests.console.helpers import ConsoleWorld


def test_pages_render_for_admin(sqlite_console: ConsoleWorld) -> None:
    client = sqlite_console.client("admin")
    for path in ("/", "/transactions", f"/transactions/{sqlite_console.own_rrn}", "/kpm",
                 "/kpm/1", "/ewarongs", f"/ewarongs/{sqlite_console.own_mid}", "/stock",
                 "/settlements", "/settlements?date=2026-11-23", "/audit", "/complaints",
                 f"/complaints/{sqlite_console.complaint_own}", "/reports",
                 "/reports?date=2026-11-23", "/reports/reconciliation.csv?date=2026-11-23",
                 "/users", "/tokens", "/metrics"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:2000])
