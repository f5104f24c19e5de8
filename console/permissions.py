"""Who may do what: the one table every check reads (docs/CONSOLE.md shows it).

A permission maps to the roles that hold it.  ``ewarong`` users hold theirs only for
their own e-warong: the check is given the e-warong a row belongs to
(:func:`console.auth.require`).
"""

from __future__ import annotations

ROLES = ("admin", "operator", "auditor", "ewarong")
_ALL = frozenset(ROLES)
_READERS = frozenset({"admin", "operator", "auditor"})

PERMISSIONS: dict[str, frozenset[str]] = {
    "view_dashboard": _ALL,
    "view_transactions": _ALL,
    "view_kpm": _READERS,
    "change_card_status": frozenset({"operator"}),
    "change_kpm_status": frozenset({"operator"}),
    "view_ewarongs": _READERS,
    "change_terminal_status": frozenset({"admin"}),
    "reset_terminal_keys": frozenset({"admin"}),
    "manage_users": frozenset({"admin"}),
    "manage_api_tokens": frozenset({"admin"}),
    "view_stock": _ALL,
    "receive_stock": frozenset({"operator"}),
    "confirm_delivery": frozenset({"operator", "ewarong"}),
    "view_settlements": _ALL,
    "view_audit": _READERS,
    "verify_audit": frozenset({"admin", "auditor"}),
    "view_complaints": _ALL,
    "open_complaint": frozenset({"operator", "ewarong"}),
    "handle_complaint": frozenset({"operator"}),
    "view_reports": _READERS,
    "download_reports": _READERS,
}

#: What each permission lets a user do, for the matrix in docs/CONSOLE.md.
DESCRIPTIONS: dict[str, str] = {
    "view_dashboard": "the live dashboard (ewarong: its own e-warong)",
    "view_transactions": "search and read transactions (ewarong: its own)",
    "view_kpm": "KPM and their cards (masked NIK and PAN)",
    "change_card_status": "block / lost / stolen / dormant / reactivate a card",
    "change_kpm_status": "activate or deactivate a KPM",
    "view_ewarongs": "e-warongs, terminals and their presence",
    "change_terminal_status": "enable or disable a terminal",
    "reset_terminal_keys": "clear a terminal's working keys (it must log on again)",
    "manage_users": "create and deactivate console users",
    "manage_api_tokens": "create and revoke JSON API tokens",
    "view_stock": "stock rows (ewarong: its own)",
    "receive_stock": "record goods received at an e-warong",
    "confirm_delivery": "confirm goods handed over for a purchase (ewarong: its own)",
    "view_settlements": "settlements, batch uploads, differences (ewarong: its own)",
    "view_audit": "the audit trail",
    "verify_audit": "verify the audit chain",
    "view_complaints": "complaints (ewarong: about its own e-warong)",
    "open_complaint": "open a complaint (ewarong: about its own e-warong)",
    "handle_complaint": "assign, move and comment on complaints",
    "view_reports": "the daily reports, printable",
    "download_reports": "the daily reports as CSV (and through the API)",
}


def allowed(role: str, permission: str) -> bool:
    """``role`` holds ``permission`` (an unknown permission: nobody does)."""
    return role in PERMISSIONS.get(permission, frozenset())


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table (docs/CONSOLE.md holds this text)."""
    lines = ["| permission | " + " | ".join(ROLES) + " | what it allows |",
             "|---|" + "---|" * len(ROLES) + "---|"]
    for permission, roles in PERMISSIONS.items():
        cells = " | ".join("yes" if role in roles else "" for role in ROLES)
        lines.append(f"| `{permission}` | {cells} | {DESCRIPTIONS[permission]} |")
    return "\n".join(lines)
