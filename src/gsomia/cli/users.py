"""``gsomia user``: a node's local users, their tokens, roles and clearances."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from gsomia.cli.terminal import ConfigOption, JsonFlag, out, party_time

app = typer.Typer(help="Local users of a node: tokens, roles, clearances.", no_args_is_help=True)

# The node and store are imported inside the commands that use them, so that `gsomia --help`
# and the file-only commands start without loading the database and web stacks.


def _node(config: Path) -> Any:
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime.clock import SystemClock
    from gsomia.node.service import Node
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    return Node(cfg, open_node_database(cfg), SystemClock())


@app.command("add")
def user_add(
    config: ConfigOption,
    user_id: Annotated[str, typer.Argument(help="User id, e.g. kim.analyst.")],
    role: Annotated[str, typer.Option(help="analyst, duty_officer, security_authority or auditor.")],
    clearance: Annotated[str | None, typer.Option(help="National marking the user is cleared to.")] = None,
    need_to_know: Annotated[list[str] | None, typer.Option(help="Compartment or purpose; repeat.")] = None,
) -> None:
    """Add a user; prints its API token once (only a hash is stored).

    USER_ID: 1 to 64 of a-z, 0-9, '.', '_' and '-'. --clearance: a marking of the node's
    own party's national scheme (R7)."""
    from gsomia.core import users
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime.clock import SystemClock
    from gsomia.node.service import Node
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    users.check_user_id(user_id)  # refused before the database is opened (or made)
    users.check_clearance(cfg.agreements, cfg.party, clearance)
    users.check_need_to_know(need_to_know or [])
    node = Node(cfg, open_node_database(cfg), SystemClock())
    token = node.add_user(user_id, role, clearance, need_to_know or [])
    out.print(f"user {user_id} ({role}) added; token (shown once):")
    print(token)


@app.command("list")
def user_list(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """List users with role, clearance and state."""
    node = _node(config)
    users = node.list_users()
    if as_json:
        print(json.dumps(users, ensure_ascii=False, indent=2))
        return
    # Fits 80 columns whole: an id folds rather than lose characters, a role is never cut, the rest wraps.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("user", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("clearance")
    table.add_column("need-to-know")
    table.add_column("state")
    for u in users:
        table.add_row(
            u["user_id"],
            u["role"],
            u["clearance"] or "",
            ", ".join(u["need_to_know"]),
            "revoked " + party_time(u["revoked_at"], node.party) if u["revoked_at"] else "active",
        )
    out.print(table)


@app.command("revoke")
def user_revoke(config: ConfigOption, user_id: Annotated[str, typer.Argument(help="User id.")]) -> None:
    """Revoke a user's token at once."""
    _node(config).revoke_user(user_id)
    out.print(f"user {user_id} revoked")
