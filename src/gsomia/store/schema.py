"""The node's tables (SQLAlchemy Core). Alembic migrations create them; this is the map.

Every listing pages on ``seq``, a monotonic integer, never on timestamps (clocks
of two nodes differ and many rows share an instant).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone; edge case 2)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("user_id", String(128), nullable=False, unique=True),
    Column("party", String(3), nullable=False),
    Column("role", String(32), nullable=False),
    Column("clearance", String(64)),
    Column("need_to_know", Text, nullable=False, default="[]"),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

items = Table(
    "items",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("item_id", String(36), nullable=False, unique=True),
    Column("agreement", String(128), nullable=False),
    Column("originator", String(3), nullable=False),
    Column("direction", String(3), nullable=False),  # out | in
    Column("peer", String(3), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("label", Text, nullable=False),  # canonical label JSON
    Column("envelope", LargeBinary, nullable=False),
    Column("lane", String(8), nullable=False, default="bulk"),
    Column("provided_at", UTCDateTime(), nullable=False),  # the release instant (edge case 4)
    Column("received_at", UTCDateTime()),
    Column("route", String(16), nullable=False, default="direct"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("peer", String(3), nullable=False),
    Column("lane", String(8), nullable=False),  # flash | bulk
    Column("kind", String(8), nullable=False),  # item | alert | note
    Column("ref", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("claimed_by", String(64)),
    Column("claimed_until", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("last_error", Text),
    UniqueConstraint("peer", "kind", "ref", name="uq_outbox_peer_kind_ref"),
)
Index("ix_outbox_pending", outbox.c.peer, outbox.c.lane, outbox.c.delivered_at, outbox.c.seq)

alerts = Table(
    "alerts",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False, unique=True),
    Column("origin", String(3), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime()),
)

notes = Table(
    "notes",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("note_id", String(36), nullable=False, unique=True),
    Column("agreement", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("by", String(3), nullable=False),
    Column("type", String(32), nullable=False),
    Column("conditions", Text, nullable=False, default="[]"),
    Column("ref", Text),
    Column("recorded_by", String(128), nullable=False),
    Column("origin", String(3), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("item_id", String(64)),
    Column("detail", Text, nullable=False, default="{}"),
)

receipts = Table(
    "receipts",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("peer", String(3), nullable=False),
    Column("body", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
)
