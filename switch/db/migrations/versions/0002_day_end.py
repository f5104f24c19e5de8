"""Day end (HOST_SPEC 1.1 §4): void, the terminal's batch, settlement, batch upload, the
idempotency classes and window, repeat-safe logon.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

* ``request_records``: ``key_date`` (DE 13 in the year nearest the switch's clock) in
  the unique key instead of ``local_date``, so a key that comes round next year is a new
  request; the classes ``upload`` and ``settlement``; a purchase's or void's invoice,
  the void's original, the purchase's standing void, the settlement that closed it.
* ``settlements``, ``batch_uploads``, ``settlement_differences``: what settled and
  what a batch upload showed.
* ``terminals``: the open batch's number, the last logon's DE 11 and time.
* ``transfers.kind``: ``void``.
* ``id_counters`` (SQLite): reserved ids are never handed out twice.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_RECORD_KINDS = "kind IN ('request', 'reversal')"
NEW_RECORD_KINDS = "kind IN ('request', 'reversal', 'upload', 'settlement')"
OLD_TRANSFER_KINDS = "kind IN ('allocation', 'purchase', 'reversal')"
NEW_TRANSFER_KINDS = "kind IN ('allocation', 'purchase', 'void', 'reversal')"
#: PostgreSQL's own names for unnamed constraints, so SQLite's (reflected without a
#: name) can be dropped by the same name in batch mode.
NAMING = {"uq": "%(table_name)s_%(column_0_N_name)s_key",
          "fk": "%(table_name)s_%(column_0_N_name)s_fkey"}


def _key_date(mmdd: str, created_at: datetime | str) -> str:
    """DE 13 placed in the year nearest ``created_at`` (switch.core.request.key_date)."""
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    when = created_at.date()
    month, day = int(mmdd[:2]), int(mmdd[2:])
    best: date | None = None
    for year in (when.year - 1, when.year, when.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if best is None or abs((candidate - when).days) < abs((best - when).days):
            best = candidate
    return (best or when).strftime("%Y%m%d")


def upgrade() -> None:
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tid", sa.String(length=8), nullable=False),
        sa.Column("batch_number", sa.String(length=6), nullable=False),
        sa.Column("processing_code", sa.String(length=6), nullable=False),
        sa.Column("stan", sa.String(length=6), nullable=False),
        sa.Column("local_date", sa.String(length=4), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("terminal_purchase_count", sa.Integer(), nullable=False),
        sa.Column("terminal_purchase_sen", sa.BigInteger(), nullable=False),
        sa.Column("terminal_void_count", sa.Integer(), nullable=False),
        sa.Column("terminal_void_sen", sa.BigInteger(), nullable=False),
        sa.Column("switch_purchase_count", sa.Integer(), nullable=False),
        sa.Column("switch_purchase_sen", sa.BigInteger(), nullable=False),
        sa.Column("switch_void_count", sa.Integer(), nullable=False),
        sa.Column("switch_void_sen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("processing_code IN ('920000', '960000')", name="settlement_code"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_settlements_tid"), "settlements", ["tid"], unique=False)
    op.create_table(
        "batch_uploads",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tid", sa.String(length=8), nullable=False),
        sa.Column("batch_number", sa.String(length=6), nullable=False),
        sa.Column("stan", sa.String(length=6), nullable=False),
        sa.Column("processing_code", sa.String(length=6), nullable=False),
        sa.Column("amount_sen", sa.BigInteger(), nullable=False),
        sa.Column("local_time", sa.String(length=6), nullable=False),
        sa.Column("local_date", sa.String(length=4), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=False),
        sa.Column("approval_code", sa.String(length=6), nullable=False),
        sa.Column("invoice", sa.String(length=6), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["settlement_id"], ["settlements.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_uploads_tid"), "batch_uploads", ["tid"], unique=False)
    op.create_table(
        "settlement_differences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=True),
        sa.Column("invoice", sa.String(length=6), nullable=True),
        sa.Column("processing_code", sa.String(length=6), nullable=False),
        sa.Column("switch_amount_sen", sa.BigInteger(), nullable=True),
        sa.Column("terminal_amount_sen", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("kind IN ('switch_only', 'terminal_only', 'amount')",
                           name="difference_kind"),
        sa.ForeignKeyConstraint(["settlement_id"], ["settlements.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_settlement_differences_settlement_id"), "settlement_differences",
                    ["settlement_id"], unique=False)
    op.create_table(
        "id_counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("batch_number", sa.String(length=6), nullable=False,
                                   server_default="000001"))
        batch.add_column(sa.Column("logon_stan", sa.String(length=6), nullable=True))
        batch.add_column(sa.Column("logon_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("terminals") as batch:
        batch.alter_column("batch_number", server_default=None)
    with op.batch_alter_table("transfers") as batch:
        batch.drop_constraint("transfer_kind", type_="check")
        batch.create_check_constraint("transfer_kind", NEW_TRANSFER_KINDS)
    with op.batch_alter_table("request_records") as batch:
        batch.add_column(sa.Column("key_date", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("invoice", sa.String(length=6), nullable=True))
        batch.add_column(sa.Column("original_record_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("voided_by_record_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("settlement_id", sa.Integer(), nullable=True))
    _backfill_key_dates()
    with op.batch_alter_table("request_records", naming_convention=NAMING) as batch:
        batch.alter_column("key_date", existing_type=sa.String(length=8), nullable=False)
        batch.drop_constraint("request_records_tid_local_date_stan_kind_key", type_="unique")
        batch.create_unique_constraint("request_records_tid_key_date_stan_kind_key",
                                       ["tid", "key_date", "stan", "kind"])
        batch.drop_constraint("record_kind", type_="check")
        batch.create_check_constraint("record_kind", NEW_RECORD_KINDS)
        batch.create_foreign_key("request_records_original_record_id_fkey", "request_records",
                                 ["original_record_id"], ["id"], ondelete="SET NULL")
        batch.create_foreign_key("request_records_settlement_id_fkey", "settlements",
                                 ["settlement_id"], ["id"])


def _backfill_key_dates() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        "SELECT id, local_date, created_at FROM request_records")).all()
    if rows:
        connection.execute(sa.text("UPDATE request_records SET key_date = :k WHERE id = :i"),
                           [{"k": _key_date(mmdd, created or datetime.now(UTC)), "i": rid}
                            for rid, mmdd, created in rows])


def downgrade() -> None:
    with op.batch_alter_table("request_records", naming_convention=NAMING) as batch:
        batch.drop_constraint("request_records_settlement_id_fkey", type_="foreignkey")
        batch.drop_constraint("request_records_original_record_id_fkey", type_="foreignkey")
        batch.drop_constraint("record_kind", type_="check")
        batch.create_check_constraint("record_kind", OLD_RECORD_KINDS)
        batch.drop_constraint("request_records_tid_key_date_stan_kind_key", type_="unique")
        batch.create_unique_constraint("request_records_tid_local_date_stan_kind_key",
                                       ["tid", "local_date", "stan", "kind"])
        for column in ("settlement_id", "voided_by_record_id", "original_record_id",
                       "invoice", "key_date"):
            batch.drop_column(column)
    with op.batch_alter_table("transfers") as batch:
        batch.drop_constraint("transfer_kind", type_="check")
        batch.create_check_constraint("transfer_kind", OLD_TRANSFER_KINDS)
    with op.batch_alter_table("terminals") as batch:
        for column in ("logon_at", "logon_stan", "batch_number"):
            batch.drop_column(column)
    op.drop_table("id_counters")
    op.drop_index(op.f("ix_settlement_differences_settlement_id"),
                  table_name="settlement_differences")
    op.drop_table("settlement_differences")
    op.drop_index(op.f("ix_batch_uploads_tid"), table_name="batch_uploads")
    op.drop_table("batch_uploads")
    op.drop_index(op.f("ix_settlements_tid"), table_name="settlements")
    op.drop_table("settlements")
