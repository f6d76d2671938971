"""The ledger: an RFC 9162 Merkle log replaces the plain audit table.

Existing audit rows are carried over, in order, as the first entries of the log,
so no record is lost; the old table is then dropped.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("idx"),
    )
    op.create_index("ix_ledger_entries_item", "ledger_entries", ["item_id"])
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    state = op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tree_heads",
        sa.Column("seq", Seq, autoincrement=True, nullable=False),
        sa.Column("party", sa.String(length=3), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_tree_heads_party", "tree_heads", ["party", "size"])
    op.create_table(
        "alarms",
        sa.Column("seq", Seq, autoincrement=True, nullable=False),
        sa.Column("alarm_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("about", sa.String(length=3), nullable=False),
        sa.Column("raised_by", sa.String(length=3), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("alarm_id"),
    )
    op.bulk_insert(state, [{"id": 1, "size": 0}])

    # Carry the audit trail over into the log, oldest first.
    from gsomia.store.ledger_store import append_rows  # the same code path as every later append

    conn = op.get_bind()
    old = sa.table(
        "audit",
        sa.column("seq"),
        sa.column("at"),
        sa.column("kind"),
        sa.column("actor"),
        sa.column("item_id"),
        sa.column("detail"),
    )
    rows = conn.execute(sa.select(old).order_by(old.c.seq)).mappings().all()
    if rows:
        append_rows(conn, [dict(r) for r in rows])
    op.drop_table("audit")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: there is no way back to an unprotected audit table")
