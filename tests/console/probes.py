"""One request per permission: what a user does to use it (the table-driven tests and
the browser tests drive these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.console.helpers import ConsoleWorld, ids

DAY = "2026-11-23"


@dataclass(frozen=True)
class Probe:
    permission: str
    method: str
    path: str
    form: dict[str, str] = field(default_factory=dict)
    #: A POST that changes something (an allowed one writes an audit record).
    changes: bool = True


def probes(cw: ConsoleWorld) -> dict[str, Probe]:
    row: dict[str, Any] = ids(cw.world)
    reason = {"reason": "probe"}
    listed = [
        Probe("view_dashboard", "GET", "/"),
        Probe("view_transactions", "GET", f"/transactions/{cw.own_rrn}"),
        Probe("view_kpm", "GET", f"/kpm/{row['kpm_id']}"),
        Probe("change_card_status", "POST", f"/cards/{row['card_id']}/status",
              {"status": "blocked", **reason}),
        Probe("change_kpm_status", "POST", f"/kpm/{row['kpm_id']}/status",
              {"status": "inactive", **reason}),
        Probe("view_ewarongs", "GET", f"/ewarongs/{row['mid']}"),
        Probe("change_terminal_status", "POST", f"/terminals/{row['tid']}/status",
              {"status": "inactive", **reason}),
        Probe("reset_terminal_keys", "POST", f"/terminals/{row['tid']}/reset-keys", reason),
        Probe("manage_users", "POST", "/users/add", {"username": "newbie", "role": "auditor"}),
        Probe("manage_api_tokens", "POST", "/tokens/add",
              {"user_id": str(row["user_id"]), "label": "probe"}),
        Probe("view_stock", "GET", "/stock"),
        Probe("receive_stock", "POST", "/stock/receive",
              {"mid": cw.own_mid, "item": "BRS005", "quantity": "5", "reference": "probe"}),
        Probe("confirm_delivery", "POST", f"/transactions/{cw.own_rrn}/deliver"),
        Probe("view_settlements", "GET", "/settlements"),
        Probe("view_audit", "GET", "/audit"),
        Probe("verify_audit", "POST", "/audit/verify", changes=False),
        Probe("view_complaints", "GET", f"/complaints/{cw.complaint_own}"),
        Probe("open_complaint", "POST", "/complaints/new",
              {"source": "operator", "rrn": cw.own_rrn, "subject": "probe"}),
        Probe("handle_complaint", "POST", f"/complaints/{cw.complaint_own}/handle",
              {"step": "comment", "note": "probe"}),
        Probe("view_reports", "GET", f"/reports?date={DAY}"),
        Probe("download_reports", "GET", f"/reports/reconciliation.csv?date={DAY}"),
    ]
    return {probe.permission: probe for probe in listed}


#: The JSON API's routes and the permission each needs.
API_PROBES = {
    "/api/v1/transactions": "view_transactions",
    f"/api/v1/reports/reconciliation?date={DAY}": "download_reports",
    "/api/v1/complaints": "view_complaints",
    "/api/v1/stock": "view_stock",
}
