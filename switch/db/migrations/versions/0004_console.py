"""Operations console (issue 16): complaints with their history, console users and API
tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("ewarong_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", _TZ, nullable=True),
        sa.CheckConstraint("role IN ('admin', 'operator', 'auditor', 'ewarong')",
                           name="console_role"),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "console_api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=60), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["console_users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index(op.f("ix_console_api_tokens_user_id"), "console_api_tokens",
                    ["user_id"], unique=False)
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opened_at", _TZ, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=True),
        sa.Column("kpm_id", sa.Integer(), nullable=True),
        sa.Column("rrn", sa.String(length=12), nullable=True),
        sa.Column("ewarong_id", sa.Integer(), nullable=True),
        sa.Column("assignee", sa.String(length=60), nullable=True),
        sa.Column("opened_by", sa.String(length=60), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.CheckConstraint("status IN ('open', 'investigating', 'resolved', 'rejected')",
                           name="complaint_status"),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"]),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.ForeignKeyConstraint(["kpm_id"], ["kpm.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("opened_at", "status", "rrn", "ewarong_id"):
        op.create_index(op.f(f"ix_complaints_{column}"), "complaints", [column], unique=False)
    op.create_table(
        "complaint_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaints.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_complaint_events_complaint_id"), "complaint_events",
                    ["complaint_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_complaint_events_complaint_id"), table_name="complaint_events")
    op.drop_table("complaint_events")
    for column in ("ewarong_id", "rrn", "status", "opened_at"):
        op.drop_index(op.f(f"ix_complaints_{column}"), table_name="complaints")
    op.drop_table("complaints")
    op.drop_index(op.f("ix_console_api_tokens_user_id"), table_name="console_api_tokens")
    op.drop_table("console_api_tokens")
    op.drop_table("console_users")
