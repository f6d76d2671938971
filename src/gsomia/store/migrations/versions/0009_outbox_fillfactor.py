"""PostgreSQL: leave room in the outbox's pages so a claim updates its rows in place.

A claim sets ``claimed_by`` and ``claimed_until`` on every row it takes. With the pages
full, PostgreSQL wrote each new row version to another page and added it to all three
of the outbox's indexes. With room on the page, and no indexed column changed, the
update is a heap-only tuple (HOT): no index entry, less WAL. Only pages written from
now on are affected; SQLite updates rows in place anyway.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE outbox SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox RESET (fillfactor)")
