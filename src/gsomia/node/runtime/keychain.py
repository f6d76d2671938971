"""A node's key chain on disk and in its database: rotating its key, keeping the old ones.

Files, beside the node's key file (``key`` in node.toml, say ``keys/KOR.key``):

- ``keys/KOR.key``: the current private key; ``keys/KOR.pub`` its public half.
- ``keys/retired/KOR-<kid>.key``: every retired private key, kept for as long as the
  items sealed to it are (R14: protection outlives the key), so they stay readable.
- ``keys/KOR.key.new``: only between the two steps of a rotation (see ``rotate``).

The database keeps every rotation statement (``keyring.Rotation``), the node's own
and its partners', each verified against the chain it extends, with a ledger entry
(``key_rotation`` or ``key_rotation_received``) in the same transaction.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from gsomia.core import keyring, keys
from gsomia.core.errors import GsomiaError
from gsomia.core.keyring import KeyHistory, Rotation
from gsomia.core.keys import PrivateKeys
from gsomia.node.runtime.config import NodeConfig
from gsomia.store import ledger_store
from gsomia.store import schema as t
from gsomia.store.files import atomic_output, load_private


class KeyChainError(GsomiaError):
    """The node's key files and its recorded key chain disagree, or a rotation cannot be made."""


def retired_dir(config: NodeConfig) -> Path:
    return config.key_path.parent / "retired"


def _pending(config: NodeConfig) -> Path:
    return config.key_path.with_name(config.key_path.name + ".new")


def public_path(config: NodeConfig) -> Path:
    return config.key_path.with_suffix(".pub")


def rotations(conn: Connection, party: str) -> list[Rotation]:
    rows = conn.execute(
        select(t.key_rotations.c.statement).where(t.key_rotations.c.party == party).order_by(t.key_rotations.c.number)
    ).scalars()
    return [Rotation.from_bytes(raw.encode("ascii")) for raw in rows]


def history(conn: Connection, anchor: keys.PublicKeys) -> KeyHistory:
    """``anchor``'s party's chain as recorded here; it must contain ``anchor``."""
    return KeyHistory.build(anchor, rotations(conn, anchor.party))


def own_history(conn: Connection, party: str, fallback: keys.PublicKeys) -> KeyHistory:
    """This node's own chain: its first key is the one it started with."""
    found = rotations(conn, party)
    return KeyHistory.build(found[0].old if found else fallback, found)


def summary(chains: list[KeyHistory]) -> list[dict[str, Any]]:
    """One row per key of each chain: what `gsomia keys history` and `GET /keys` show."""
    rows: list[dict[str, Any]] = []
    for chain in chains:
        for n, key in enumerate(chain.keys):
            retired = chain.retired_at(key.kid)
            rows.append(
                {
                    "party": chain.party,
                    "number": n,
                    "kid": key.kid,
                    "since": chain.rotations[n - 1].at.isoformat() if n else None,
                    "retired_at": retired.isoformat() if retired else None,
                    "heads_from_size": chain.rotations[n - 1].tree_size + 1 if n else 0,
                }
            )
    return rows


def store(conn: Connection, rotation: Rotation, actor: str, received: bool, at: datetime | None = None) -> int:
    """Keep a verified rotation and enter it on the ledger at ``at``, in the caller's transaction.

    The running node passes its clock's instant; a command (``rotate``, a partner file's
    import) runs now and may leave ``at`` out."""
    now = at or datetime.now(UTC)
    conn.execute(
        insert(t.key_rotations).values(
            party=rotation.party,
            number=rotation.number,
            old_kid=rotation.old.kid,
            new_kid=rotation.new.kid,
            statement=rotation.to_bytes().decode("ascii"),
            at=rotation.at,
            received_at=now,
        )
    )
    detail = {
        "party": rotation.party,
        "number": rotation.number,
        "old_kid": rotation.old.kid,
        "new_kid": rotation.new.kid,
        "tree_size": rotation.tree_size,
        "rotated_at": rotation.at.isoformat(),
    }
    kind = "key_rotation_received" if received else "key_rotation"
    rows = [{"at": now, "kind": kind, "actor": actor, "item_id": None, "detail": detail}]
    return ledger_store.append_rows(conn, rows)[0]  # the entry's index


def learn(
    engine: Engine, known: KeyHistory, offered: list[Rotation], actor: str, at: datetime | None = None
) -> KeyHistory:
    """Extend a partner's chain with the statements it offers; store the new ones (received at ``at``)."""
    fresh = [r for r in offered if r.number > len(known.rotations)]
    for r in offered:
        if r.number <= len(known.rotations) and r.to_bytes() != known.rotations[r.number - 1].to_bytes():
            raise keyring.KeyRotationInvalid(
                f"{known.party} offers a different rotation {r.number} than the one recorded: its key chain forked"
            )
    extended = known
    for r in sorted(fresh, key=lambda r: r.number):
        extended = extended.extend(r)
    if fresh:
        try:
            with engine.begin() as conn:
                already = len(rotations(conn, known.party))
                for r in extended.rotations[already:]:
                    store(conn, r, actor, received=True, at=at)
        except IntegrityError:
            pass  # another process of this node stored the same verified statements first
    return extended


def resolve(config: NodeConfig, engine: Engine) -> tuple[NodeConfig, list[PrivateKeys], KeyHistory]:
    """The node's current key (finishing an interrupted rotation), its retired keys, its chain.

    Refuses to start on a key file that is not the chain's current key, or with a
    retired key missing (the items sealed to it could not be opened).
    """
    with engine.connect() as conn:
        chain = own_history(conn, config.party, config.key.public())
    pending = _pending(config)
    if pending.exists():
        candidate = load_private(pending)
        if candidate.public().kid == chain.current.kid:
            _write_public(config, candidate)
            os.replace(pending, config.key_path)  # the rotation was recorded: finish it
        else:
            pending.unlink()  # it never was: the old key stays current
    current = load_private(config.key_path)
    if current.public().kid != chain.current.kid:
        state = "a retired key" if chain.by_kid(current.public().kid) else "not in its key chain"
        raise KeyChainError(
            f"{config.key_path}: key {current.public().kid} is {state}; {config.party}'s current key is "
            f"{chain.current.kid} (rotation {len(chain.rotations)})"
        )
    retired: list[PrivateKeys] = []
    for old in chain.keys[:-1]:
        path = retired_dir(config) / f"{config.party}-{old.kid}.key"
        if not path.exists():
            raise KeyChainError(f"{path}: missing; the items sealed to retired key {old.kid} could not be opened")
        key = load_private(path)
        if key.public().kid != old.kid:
            raise KeyChainError(f"{path}: holds key {key.public().kid}, not {old.kid}")
        retired.append(key)
    return replace(config, key=current), [current, *reversed(retired)], chain


def _write_public(config: NodeConfig, key: PrivateKeys) -> None:
    with atomic_output(public_path(config)) as handle:
        handle.write(key.public().to_bytes())


def _refuse_if_running(config: NodeConfig) -> None:
    """A running node holds its key in memory: rotating under it would split its signatures."""
    for host, port in (config.listen, config.peer_listen):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                raise KeyChainError(
                    f"{config.party}'s node is running ({host}:{port} answers): stop it before rotating its key"
                )


def rotate(config: NodeConfig, engine: Engine, at: datetime | None = None) -> Rotation:
    """Replace the node's key: a statement signed by old and new, recorded on the ledger.

    Crash-safe in three steps: (1) the old key is copied to ``retired/`` and the new
    one written to ``KOR.key.new``; (2) one transaction stores the statement and its
    ledger entry; (3) ``KOR.key.new`` is renamed over ``KOR.key``. A crash before (2)
    leaves the old key current (the ``.new`` file is discarded at the next start); a
    crash after it is finished at the next start (``resolve``).
    """
    _refuse_if_running(config)
    config, _, chain = resolve(config, engine)
    when = at or datetime.now(UTC)
    if chain.rotations and when <= chain.rotations[-1].at:  # before any file is written
        raise KeyChainError(f"a rotation must come after the last one ({chain.rotations[-1].at.isoformat()})")
    old = config.key
    new = keys.generate(config.party, old.suite)
    folder = retired_dir(config)
    folder.mkdir(mode=0o700, exist_ok=True)
    with atomic_output(folder / f"{config.party}-{old.public().kid}.key", mode=0o600) as handle:
        handle.write(old.to_bytes())
    with atomic_output(_pending(config), mode=0o600) as handle:
        handle.write(new.to_bytes())
    with engine.begin() as conn:
        size = ledger_store.size(conn)
        rotation = keyring.rotate(old, new, len(chain.rotations) + 1, when, size)
        chain.extend(rotation)
        if store(conn, rotation, "cli", received=False) != size:  # rolls the transaction back
            raise KeyChainError(
                "another process wrote to the ledger during the rotation: stop every process of the node"
            )
    _write_public(config, new)
    os.replace(_pending(config), config.key_path)
    return rotation
