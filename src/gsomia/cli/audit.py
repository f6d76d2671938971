"""``gsomia audit``: verify a node's ledger, prove an item's entries, check a proof."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gsomia.cli.terminal import ConfigOption, JsonFlag, out, read_json
from gsomia.core.errors import GsomiaError
from gsomia.core.words import count

app = typer.Typer(help="The ledger: verify it, prove an item, check a proof.", no_args_is_help=True)

# The node and store are imported inside the commands that use them, so that `gsomia --help`
# and the file-only commands start without loading the database and web stacks.


@app.command("verify")
def audit_verify(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """Recompute every entry, tree node and stored tree head; exit 2 naming the first bad one."""
    from gsomia.node import audit
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    peers = {p: peer.public_key for p, peer in cfg.peers.items()}
    try:
        cfg = keychain.resolve(cfg, engine)[0]
    except GsomiaError:  # the recorded key chain does not load: name the entry at fault where the ledger can
        audit.verify_node(engine, cfg.key.public(), peers)
        raise
    result = audit.verify_node(engine, cfg.key.public(), peers)
    if as_json:
        print(json.dumps(result))
        return
    out.print(
        f"ledger of {result['party']}: {count(result['size'], 'entry', 'entries')}, root {result['root']}, "
        f"{count(result['tree_heads_checked'], 'signed tree head')} checked: all consistent"
        + (
            f"; {count(result['queued'], 'entry', 'entries')} of flash reports queued for the log"
            if result["queued"]
            else ""
        )
    )


@app.command("prove")
def audit_prove(
    item_id: Annotated[str, typer.Argument(help="The item whose ledger entries to prove.")],
    config: ConfigOption,
) -> None:
    """Print an inclusion proof (JSON) of every ledger entry about ITEM_ID under a freshly signed head."""
    from gsomia.node import audit
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    cfg = keychain.resolve(cfg, engine)[0]
    print(json.dumps(audit.prove(engine, cfg.key, item_id), ensure_ascii=False, indent=2))


@app.command("check-proof")
def audit_check_proof(
    proof_file: Annotated[Path, typer.Argument(help="A proof from `gsomia audit prove`.")],
    trust: Annotated[Path, typer.Option(help="The node's public key file (PARTY.pub).")],
    as_json: JsonFlag = False,
) -> None:
    """Check a proof with the node's public key only."""
    from gsomia.node import audit
    from gsomia.store.files import load_public

    result = audit.check_proof(read_json(proof_file, "proof"), load_public(trust))
    if as_json:
        print(json.dumps(result))
        return
    out.print(
        f"proof checks: {count(len(result['entries']), 'entry', 'entries')} ({', '.join(result['entries'])}) in "
        f"{result['party']}'s log of {count(result['size'], 'entry', 'entries')}, root {result['root'][:16]}…, signed at {result['signed_at']}"
    )
