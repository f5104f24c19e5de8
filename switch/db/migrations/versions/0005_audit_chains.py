"""Scale-out (issue 17): the audit chain becomes several chains, so switch processes
append to it at once (each batch takes a chain no other batch holds).

``audit_records`` gains ``chain`` (the existing records are chain 1) and its primary
key becomes ``(chain, seq)``; ``audit_head`` holds one head per chain, its ``id`` the
chain's number, and the new chains start at the genesis MAC.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: switch.db.audit.CHAINS when this revision was written (a migration keeps its own)
CHAINS = 16
GENESIS_MAC = "0" * 64


_COPIED = ("at", "actor", "action", "subject", "detail", "prev_mac", "mac")


def _AUDIT_COLUMNS() -> list[sa.Column[object]]:  # noqa: N802 (a table's shape)
    """``audit_records``' columns after ``seq``, as revision 0001 made them."""
    return [sa.Column("at", sa.String(length=40), nullable=False),
            sa.Column("actor", sa.String(length=60), nullable=False),
            sa.Column("action", sa.String(length=40), nullable=False),
            sa.Column("subject", sa.String(length=80), nullable=False),
            sa.Column("detail", sa.Text(), nullable=False),
            sa.Column("prev_mac", sa.String(length=64), nullable=False),
            sa.Column("mac", sa.String(length=64), nullable=False)]


def upgrade() -> None:
    chain = sa.Column("chain", sa.Integer(), nullable=False, server_default="1")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("audit_records", chain)
        op.execute("ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey")
        op.create_primary_key("audit_records_pkey", "audit_records", ["chain", "seq"])
    else:  # SQLite cannot change a primary key: a new table, the rows copied over
        op.create_table(
            "_audit_records_new", chain,
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            *_AUDIT_COLUMNS(),
            sa.PrimaryKeyConstraint("chain", "seq", name="audit_records_pkey"))
        names = ", ".join(("seq", *_COPIED))
        op.execute(f"INSERT INTO _audit_records_new (chain, {names}) "
                   f"SELECT 1, {names} FROM audit_records")
        op.drop_table("audit_records")
        op.rename_table("_audit_records_new", "audit_records")
    heads = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.Integer),
                     sa.column("mac", sa.String))
    present = {row[0] for row in op.get_bind().execute(sa.select(heads.c.id))}
    missing = [{"id": chain, "seq": 0, "mac": GENESIS_MAC}
               for chain in range(1, CHAINS + 1) if chain not in present]
    if missing:
        op.bulk_insert(heads, missing)


def downgrade() -> None:
    op.execute("DELETE FROM audit_head WHERE id > 1")
    op.execute("DELETE FROM audit_records WHERE chain > 1")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey")
        op.create_primary_key("audit_records_pkey", "audit_records", ["seq"])
        op.drop_column("audit_records", "chain")
    else:
        with op.batch_alter_table("audit_records", recreate="always") as batch:
            batch.drop_column("chain")
            batch.create_primary_key("audit_records_pkey", ["seq"])
