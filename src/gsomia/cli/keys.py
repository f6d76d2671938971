"""``gsomia keys``: generate a party's key pair, rotate a node's key, show its chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gsomia.cli.terminal import ConfigOption, JsonFlag, now, out, party_time
from gsomia.core.agreement import terms
from gsomia.core.errors import InvalidInput

app = typer.Typer(
    help="Node keys: generate a party's key pair, rotate a node's key, show its chain.", no_args_is_help=True
)

# The node and store are imported inside the commands that use them, so that `gsomia --help`
# and the file-only commands start without loading the database and web stacks.


@app.command("generate")
def keys_generate(
    party: Annotated[str, typer.Option(help="ISO 3166-1 alpha-3 code of the party, e.g. KOR.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for PARTY.key (mode 0600) and PARTY.pub.")],
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid (the agreement file chooses).")] = "classic",
    host: Annotated[
        list[str] | None,
        typer.Option(help="Host name or IP address the peer API is reached at; repeat. Default: 127.0.0.1, localhost."),
    ] = None,
    tls_only: Annotated[
        bool, typer.Option("--tls-only", help="Only a new TLS certificate and key (PARTY.crt, PARTY.tls.key).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Generate a party's node keys (KEM + signature) and its TLS certificate for the user and peer APIs.

    A running node's key is replaced with `gsomia keys rotate`, never by generating over it."""
    from gsomia.node.setup.init import key_files, write_node_keys, write_tls

    if len(party) != 3 or not party.isascii() or not party.isupper():
        raise InvalidInput(f"--party: {party!r} is not an ISO 3166-1 alpha-3 code such as KOR")
    if suite not in terms.SUITES:
        raise InvalidInput(f"--suite: {suite!r} is not one of {', '.join(terms.SUITES)}")
    hosts = tuple(host or ("127.0.0.1", "localhost"))
    for name in hosts:
        if not name or any(c.isspace() or c in "/:@" for c in name):
            raise InvalidInput(f"--host: {name!r} is not a host name or IP address")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = key_files(out_dir, party)  # the files `gsomia node init` writes, by the same code
    key_path, pub_path, crt_path, tls_key_path = files.key, files.public, files.tls_cert, files.tls_key
    targets = (crt_path, tls_key_path) if tls_only else (key_path, pub_path, crt_path, tls_key_path)
    if not force:
        for path in targets:
            if path.exists():
                raise InvalidInput(f"{path}: already exists (use --force to replace it)")
    if not tls_only:
        private = write_node_keys(files, party, suite)
        out.print(
            f"{party} {suite} keys: {key_path} (private, 0600), {pub_path} (public, key id {private.public().kid})"
        )
    write_tls(files, party, hosts, now())
    out.print(
        f"{party} TLS for the user and peer APIs: {crt_path} (certificate for {', '.join(hosts)}), {tls_key_path} (private, 0600)"
    )


@app.command("rotate")
def keys_rotate(config: ConfigOption) -> None:
    """Replace a stopped node's key: the old key signs the new one in, the ledger records it.

    The old private key moves to retired/ beside the key file (items sealed to it stay
    readable); the partner learns the new key at the next message, from the statement.
    """
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    rotation = keychain.rotate(cfg, open_node_database(cfg))
    out.print(
        f"{rotation.party}: rotation {rotation.number} at {party_time(rotation.at, cfg.party)}: key {rotation.old.kid} "
        f"retired to {keychain.retired_dir(cfg)}, key {rotation.new.kid} current from ledger entry {rotation.tree_size}"
    )
    out.print(f"give the partner's operator {keychain.public_path(cfg)} (or let its node learn it on contact)")


@app.command("history")
def keys_history(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """Every key of this node and of its partners, in order, with when each was retired."""
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    cfg, _, own = keychain.resolve(cfg, engine)
    with engine.connect() as conn:
        chains = [own, *(keychain.history(conn, p.public_key) for p in cfg.peers.values())]
    rows = keychain.summary(chains)
    if as_json:
        print(json.dumps(rows))
        return
    # Fits 80 columns with every key id whole (what operators compare); the instants wrap.
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    table.add_column("party", no_wrap=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("key id", no_wrap=True)
    table.add_column("since", min_width=len("2019-11-23"))
    table.add_column("retired", min_width=len("2019-11-23"))
    table.add_column("heads from size", justify="right", min_width=len("heads"))
    for r in rows:
        table.add_row(
            r["party"],
            str(r["number"]),
            r["kid"],
            party_time(r["since"], cfg.party) if r["since"] else "(first key)",
            party_time(r["retired_at"], cfg.party) if r["retired_at"] else "current",
            str(r["heads_from_size"]),
        )
    out.print(table)
