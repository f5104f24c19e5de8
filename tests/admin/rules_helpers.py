"""Helpers of the issue-14 admin command tests: the world's URL, the CLI, the audit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from switch.cli import main
from switch.db.audit import verify
from switch.db.tables import AuditRecord
from tests.world import HostWorld


def url_of(world: HostWorld) -> str:
    return world.db.engine.url.render_as_string(hide_password=False)


def run_cli(world: HostWorld, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str, str]:
    """``bpnt-switch ARGV --db <the world>``: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([*argv, "--db", url_of(world)])
    out, err = capsys.readouterr()
    return code, out, err


def audits(world: HostWorld, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, subject, detail) of every audit record ``action``, in order."""
    with world.db.transaction() as session:
        rows = session.execute(select(AuditRecord.actor, AuditRecord.subject,
                                      AuditRecord.detail)
                               .where(AuditRecord.action == action)
                               .order_by(AuditRecord.seq)).all()
    return [(actor, subject, json.loads(detail)) for actor, subject, detail in rows]


def audit_count(world: HostWorld) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def assert_audit_verifies(world: HostWorld) -> None:
    with world.db.transaction() as session:
        report = verify(session, world.keys.audit_key)
    assert report.ok, report.summary()
