"""The node's users: added and revoked on the command line, authenticated by their token."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from gsomia.core import policy, users
from gsomia.core.errors import GsomiaError, NotFound
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.service.integrity import Integrity
from gsomia.node.service.ledger import Ledger
from gsomia.store import schema as t
from gsomia.store.db import reading


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a plain SHA-256 is enough to keep them unusable at rest.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# Built once: every request authenticates, and a constant statement only binds its parameter.
_USER_BY_TOKEN = select(t.users).where(t.users.c.token_hash == bindparam("token_hash"), t.users.c.revoked_at.is_(None))


class Users:
    """Who may sign in, and as whom: each row used only as its ledger entries vouch for it."""

    def __init__(self, engine: Engine, config: NodeConfig, clock: Clock, integrity: Integrity, ledger: Ledger) -> None:
        self.engine = engine
        self.config = config
        self.party = config.party
        self.clock = clock
        self.integrity = integrity
        self.ledger = ledger

    def add_user(self, user_id: str, role: str, clearance: str | None, need_to_know: Sequence[str]) -> str:
        users.check_user_id(user_id)  # the command line checks too; any other caller is held to the same
        clearance = users.check_clearance(self.config.agreements, self.party, clearance)
        need_to_know = users.check_need_to_know(need_to_know)
        subject = policy.subject_from_dict(
            {
                "id": user_id,
                "party": self.party,
                "role": role,
                "clearance": clearance,
                "need_to_know": list(need_to_know),
            }
        )
        token = "gsk_" + secrets.token_urlsafe(32)
        created = self.clock.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t.users).values(
                        user_id=subject.id,
                        party=self.party,
                        role=subject.role.value,
                        clearance=clearance,
                        need_to_know=json.dumps(sorted(need_to_know), ensure_ascii=False),
                        token_hash=token_hash(token),
                        created_at=created,
                    )
                )
                # Every column a decision reads, so the row is checked against the entry (principle 6).
                entered = {
                    "user": user_id,
                    "party": self.party,
                    "role": subject.role.value,
                    "clearance": clearance,
                    "need_to_know": sorted(need_to_know),
                    "token_hash": token_hash(token),
                    "created_at": created.isoformat(),
                }
                self.ledger.audit(conn, "user_added", "cli", None, entered)
        except IntegrityError:
            raise GsomiaError(f"user {user_id!r} already exists") from None
        return token

    def revoke_user(self, user_id: str) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.users)
                .where(t.users.c.user_id == user_id, t.users.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            if not done:
                raise NotFound(f"no active user {user_id!r}")
            self.ledger.audit(conn, "user_revoked", "cli", None, {"user": user_id, "revoked_at": now.isoformat()})
        self.integrity.forget_users()  # the next authentication reads the revocation

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.users).order_by(t.users.c.seq)).mappings().all()
        return [
            {
                "user_id": r["user_id"],
                "role": r["role"],
                "clearance": r["clearance"],
                "need_to_know": json.loads(r["need_to_know"]),
                "created_at": r["created_at"].isoformat(),
                "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
            }
            for r in rows
        ]

    def authenticate(self, token: str) -> policy.Subject | None:
        with reading(self.engine) as conn:
            row = conn.execute(_USER_BY_TOKEN, {"token_hash": token_hash(token)}).mappings().first()
        if row is None or not self.integrity.user_bound(row):
            return None
        return policy.Subject(
            id=row["user_id"],
            party=row["party"],
            role=policy.Role(row["role"]),
            clearance=row["clearance"],
            need_to_know=frozenset(json.loads(row["need_to_know"])),
        )

    def live_tokens(self, tokens: Iterable[str]) -> set[str]:
        """Which of these tokens belong to a user not revoked (``authenticate``, in one query)."""
        by_hash = {token_hash(tok): tok for tok in tokens}
        if not by_hash:
            return set()
        u = t.users
        with reading(self.engine) as conn:
            found = conn.execute(
                select(u.c.token_hash).where(u.c.token_hash.in_(list(by_hash)), u.c.revoked_at.is_(None))
            ).scalars()
            return {by_hash[h] for h in found}
