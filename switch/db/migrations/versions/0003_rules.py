"""Programme rules and e-warong stock (issue 14): dormancy, velocity and hours, zoning,
reference prices, inventory, goods handed over.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

* ``kpm.zone`` (the NIK's first 6 digits, backfilled), ``cards.issued_at`` (backfilled
  with the migration's time: a card issued before it is not dormant before 90 days
  after it) and ``cards.reactivated_at``.
* ``ewarongs``: region (reference prices), opening hours and UTC offset.
* ``ewarong_zones``, ``reference_prices``, ``stock``, ``stock_receipts``, ``alerts``,
  ``deliveries``.
* ``request_records``: the card, the basket (DE 48), the e-warong whose stock a
  purchase took.
* ``terminal_cards``: when each terminal last saw each card (the velocity rule).
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kpm") as batch:
        batch.add_column(sa.Column("zone", sa.String(length=6), nullable=True))
    op.execute("UPDATE kpm SET zone = substr(nik, 1, 6)")
    with op.batch_alter_table("kpm") as batch:
        batch.alter_column("zone", existing_type=sa.String(length=6), nullable=False)
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reactivated_at", sa.DateTime(timezone=True),
                                   nullable=True))
    op.get_bind().execute(sa.text("UPDATE cards SET issued_at = :now"),
                          {"now": datetime.now(UTC)})
    with op.batch_alter_table("cards") as batch:
        batch.alter_column("issued_at", existing_type=sa.DateTime(timezone=True),
                           nullable=False)
    with op.batch_alter_table("ewarongs") as batch:
        batch.add_column(sa.Column("region", sa.String(length=6), nullable=True))
        batch.add_column(sa.Column("open_hhmm", sa.String(length=4), nullable=True))
        batch.add_column(sa.Column("close_hhmm", sa.String(length=4), nullable=True))
        batch.add_column(sa.Column("utc_offset_minutes", sa.Integer(), nullable=False,
                                   server_default="420"))
    with op.batch_alter_table("ewarongs") as batch:
        batch.alter_column("utc_offset_minutes", server_default=None)
    op.create_table(
        "ewarong_zones",
        sa.Column("ewarong_id", sa.Integer(), nullable=False),
        sa.Column("zone_prefix", sa.String(length=6), nullable=False),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.PrimaryKeyConstraint("ewarong_id", "zone_prefix"),
    )
    op.create_table(
        "reference_prices",
        sa.Column("item_code", sa.String(length=6), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("unit_price_sen", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("unit_price_sen > 0", name="reference_price_positive"),
        sa.ForeignKeyConstraint(["item_code"], ["items.code"]),
        sa.PrimaryKeyConstraint("item_code", "region"),
    )
    op.create_table(
        "stock",
        sa.Column("ewarong_id", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(length=6), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("low_threshold", sa.Integer(), nullable=True),
        sa.CheckConstraint("quantity >= 0", name="stock_not_negative"),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.ForeignKeyConstraint(["item_code"], ["items.code"]),
        sa.PrimaryKeyConstraint("ewarong_id", "item_code"),
    )
    op.create_table(
        "stock_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ewarong_id", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(length=6), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('receive', 'adjust')", name="stock_receipt_kind"),
        sa.CheckConstraint("quantity <> 0", name="stock_receipt_not_zero"),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.ForeignKeyConstraint(["item_code"], ["items.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ewarong_id", "item_code", "reference"),
    )
    op.create_index(op.f("ix_stock_receipts_ewarong_id"), "stock_receipts", ["ewarong_id"],
                    unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("tid", sa.String(length=8), nullable=True),
        sa.Column("ewarong_id", sa.Integer(), nullable=True),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("card_ids", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "rule IN ('velocity', 'off_hours', 'zoning', 'over_price', 'low_stock')",
            name="alert_rule"),
        sa.CheckConstraint("action IN ('decline', 'flag')", name="alert_action"),
        sa.ForeignKeyConstraint(["ewarong_id"], ["ewarongs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_alerts_created_at"), "alerts", ["created_at"], unique=False)
    op.create_table(
        "deliveries",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["request_records.id"]),
        sa.PrimaryKeyConstraint("record_id"),
    )
    with op.batch_alter_table("request_records") as batch:
        batch.add_column(sa.Column("card_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("basket", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stock_ewarong_id", sa.Integer(), nullable=True))
    op.create_table(
        "terminal_cards",
        sa.Column("tid", sa.String(length=8), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"]),
        sa.PrimaryKeyConstraint("tid", "card_id"),
    )
    op.create_index("ix_terminal_cards_tid_last_at", "terminal_cards", ["tid", "last_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_terminal_cards_tid_last_at", table_name="terminal_cards")
    op.drop_table("terminal_cards")
    with op.batch_alter_table("request_records") as batch:
        for column in ("stock_ewarong_id", "basket", "card_id"):
            batch.drop_column(column)
    op.drop_table("deliveries")
    op.drop_index(op.f("ix_alerts_created_at"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_stock_receipts_ewarong_id"), table_name="stock_receipts")
    op.drop_table("stock_receipts")
    op.drop_table("stock")
    op.drop_table("reference_prices")
    op.drop_table("ewarong_zones")
    with op.batch_alter_table("ewarongs") as batch:
        for column in ("utc_offset_minutes", "close_hhmm", "open_hhmm", "region"):
            batch.drop_column(column)
    with op.batch_alter_table("cards") as batch:
        for column in ("reactivated_at", "issued_at"):
            batch.drop_column(column)
    with op.batch_alter_table("kpm") as batch:
        batch.drop_column("zone")
