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
# Only what is pending (migration 0007): the claim and the pending count read no delivered row.
Index(
    "ix_outbox_undelivered",
    outbox.c.peer,
    outbox.c.lane,
    outbox.c.seq,
    postgresql_where=outbox.c.delivered_at.is_(None),
    sqlite_where=outbox.c.delivered_at.is_(None),
)

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

# The ledger (RFC 9162 log): every entry, its leaf hash, and the stored subtree hashes.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),  # gapless leaf index
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("item_id", String(64)),
    Column("body", Text, nullable=False),  # the canonical entry JSON the leaf hash covers
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
Index("ix_ledger_entries_item", ledger_entries.c.item_id)

# Entries committed with a flash report's transaction, waiting for the sequencer to give them
# their index in the log (``ledger_store.sequence_queued``): the flash path never takes the
# log's counter, which bulk transactions hold until they commit (R17). Trillian's queue.
ledger_queue = Table(
    "ledger_queue",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("item_id", String(64)),
    Column("detail", Text, nullable=False),  # JSON
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

ledger_state = Table(
    "ledger_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # one row: id = 1
    Column("size", BigInteger, nullable=False),
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("party", String(3), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
)
Index("ix_tree_heads_party", tree_heads.c.party, tree_heads.c.size)

alarms = Table(
    "alarms",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("alarm_id", String(36), nullable=False, unique=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),  # fork | rollback | bad_head
    Column("about", String(3), nullable=False),  # the party whose log is in doubt
    Column("raised_by", String(3), nullable=False),
    Column("detail", Text, nullable=False),
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

# Signed records the two nodes exchange about items: consent requests and decisions
# (R5), releases, loss or compromise reports and their investigation (R11).
records = Table(
    "records",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("item_id", String(36), nullable=False),
    Column("ref", String(36)),  # the record this one answers (a request, a report)
    Column("origin", String(3), nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON, what the signature covers
    Column("signature", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
Index("ix_records_item", records.c.item_id)
Index("ix_records_ref", records.c.ref)

# Key rotation statements (``keyring.Rotation``), the node's own and its partners',
# each verified against the chain before it is stored.
key_rotations = Table(
    "key_rotations",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("party", String(3), nullable=False),
    Column("number", Integer, nullable=False),
    Column("old_kid", String(32), nullable=False),
    Column("new_kid", String(32), nullable=False),
    Column("statement", Text, nullable=False),  # canonical JSON with both signatures
    Column("at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("party", "number", name="uq_key_rotations_party_number"),
)

# A SQLite node's flash file (``store.flash``): per table there, the highest seq whose row
# has been moved into the table of the same name here. Written in the moving transaction, so
# a crash before the moved rows are deleted from the flash file moves nothing twice.
flash_moved = Table(
    "flash_moved",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
