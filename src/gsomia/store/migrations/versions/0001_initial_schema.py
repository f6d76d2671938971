"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 14:48:28.199884

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema: the tables in the order Alembic generated them."""
    _alerts_and_audit()
    _items_and_notes()
    _outbox()
    _receipts_and_users()


def _seq() -> sa.Column[int]:
    """Every table's row number: BIGINT on PostgreSQL, SQLite's INTEGER (its rowid)."""
    return sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False)


def _alerts_and_audit() -> None:
    op.create_table(
        "alerts",
        _seq(),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("origin", sa.String(length=3), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("alert_id"),
    )
    op.create_table(
        "audit",
        _seq(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def _items_and_notes() -> None:
    op.create_table(
        "items",
        _seq(),
        sa.Column("item_id", sa.String(length=36), nullable=False),
        sa.Column("agreement", sa.String(length=128), nullable=False),
        sa.Column("originator", sa.String(length=3), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("peer", sa.String(length=3), nullable=False),
        sa.Column("classification", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("provided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("item_id"),
    )
    op.create_table(
        "notes",
        _seq(),
        sa.Column("note_id", sa.String(length=36), nullable=False),
        sa.Column("agreement", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=3), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("origin", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("note_id"),
    )


def _outbox() -> None:
    op.create_table(
        "outbox",
        _seq(),
        sa.Column("peer", sa.String(length=3), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("peer", "kind", "ref", name="uq_outbox_peer_kind_ref"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_pending", ["peer", "lane", "delivered_at", "seq"], unique=False)


def _receipts_and_users() -> None:
    op.create_table(
        "receipts",
        _seq(),
        sa.Column("peer", sa.String(length=3), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "users",
        _seq(),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("party", sa.String(length=3), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("clearance", sa.String(length=64), nullable=True),
        sa.Column("need_to_know", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("user_id"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table("users")
    op.drop_table("receipts")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_pending")

    op.drop_table("outbox")
    op.drop_table("notes")
    op.drop_table("items")
    op.drop_table("audit")
    op.drop_table("alerts")
    # ### end Alembic commands ###
