"""``gsomia node``: serve a node; ``init``, ``export-partner-file`` and ``import-partner-file``.

Standing up a party's node on its own machine (``node.init``) and introducing it to the
partner's (``node.partner``); the steps in order are docs/deploy.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gsomia.cli.terminal import ConfigOption, now, out
from gsomia.core.errors import InvalidInput
from gsomia.core.words import count

app = typer.Typer(help="Run a national node.", no_args_is_help=True)

# The node and store are imported inside the commands that use them, so that `gsomia --help`
# and the file-only commands start without loading the database and web stacks.


@app.command("serve")
def node_serve(
    config: ConfigOption,
    flash_link: Annotated[int | None, typer.Option(hidden=True, help="Run as the node's flash process.")] = None,
) -> None:
    """Serve the user API and the mutual-TLS peer API, and deliver the outbox.

    With flash_listen in the configuration, flash work (R17) runs in a second process on
    ports of its own, which this one starts, watches and stops."""
    from gsomia.node.runtime import config as node_config
    from gsomia.node.serve import run

    cfg = node_config.load(config)
    if flash_link is not None and cfg.flash_listen is None:
        raise typer.BadParameter("this configuration has no flash_listen", param_hint="--flash-link")
    scheme = "https" if cfg.user_tls else "http"
    if flash_link is None:
        out.print(
            f"gsomia node {cfg.party}: user API {scheme}://{cfg.listen[0]}:{cfg.listen[1]}, "
            f"peer API https://{cfg.peer_listen[0]}:{cfg.peer_listen[1]} (mutual TLS)"
        )
    if flash_link is None and cfg.flash_listen and cfg.flash_peer_listen:
        out.print(
            f"gsomia node {cfg.party}: flash process: user API {scheme}://{cfg.flash_listen[0]}:{cfg.flash_listen[1]}, "
            f"peer API https://{cfg.flash_peer_listen[0]}:{cfg.flash_peer_listen[1]}"
        )
    run(cfg, flash_link)


def node_init(
    party: Annotated[str, typer.Option(help="ISO 3166-1 alpha-3 code of this node's party, e.g. KOR.")],
    agreement: Annotated[Path, typer.Option(help="The agreement file (TOML) the node works under.")],
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory (made 0700; must hold no node).")],
    listen: Annotated[str, typer.Option(help="User API address, HOST:PORT (HTTPS).")] = "127.0.0.1:8701",
    peer_listen: Annotated[
        str, typer.Option(help="Peer API address, HOST:PORT (mutual TLS); 0.0.0.0:PORT for every interface.")
    ] = "127.0.0.1:8711",
    database_url: Annotated[
        str, typer.Option(help="sqlite:///FILE (relative to --dir) or postgresql+psycopg://USER@HOST/DB.")
    ] = "sqlite:///node.db",
    suite: Annotated[
        str | None, typer.Option(help="classic or pq-hybrid; must be the agreement's (its default).")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="Another host name or IP address the node is reached at (in its certificate); repeat."),
    ] = None,
) -> None:
    """Make a node: node.toml, its keys and TLS certificate, and its database (every migration).

    The certificate names the --listen and --peer-listen hosts (wildcards aside) and every
    --host. Next: give the partner this node's file (export-partner-file) and import its own."""
    from gsomia.node.setup.init import init_node

    made = init_node(directory, party, agreement, listen, peer_listen, database_url, suite, host or (), now=now())
    out.print(f"{made.party} node in {made.directory} under {made.agreement.id}: {made.config}", soft_wrap=True)
    out.print(
        f"  keys: {made.keys.key} (private, 0600), {made.keys.public} (key id {made.kid})\n"
        f"  TLS: {made.keys.tls_cert} (for {', '.join(made.hosts)}), {made.keys.tls_key} (private, 0600)\n"
        f"  database: {_shown(made.database_url)} (schema current)",
        soft_wrap=True,
    )
    out.print(
        f"next: gsomia node export-partner-file --config {made.config} -o {made.party}.partner.json",
        soft_wrap=True,
    )


def _shown(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # only for display: the node's own checks ran already
        return url.split("@")[-1]


def node_export_partner_file(
    config: Annotated[Path, typer.Option("--config", help="The node's node.toml.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The partner file to write.")],
    peer_url: Annotated[
        str | None,
        typer.Option(help="https://HOST:PORT the partner's node calls (default: peer_listen)."),
    ] = None,
    for_party: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="The partner the file is for (KOR, JPN, USA); needed where the node has several.",
        ),
    ] = None,
) -> None:
    """Write this node's partner file for the partner's node, and print its fingerprint.

    The file holds the party, its public keys and key chain, its TLS certificate, the peer
    API address and the agreement's id. Read the fingerprint to the partner's security
    authority out of band (telephone, fax)."""
    from gsomia.node.runtime import config as node_config
    from gsomia.node.setup import partner

    cfg = node_config.load(config)
    made = partner.export(cfg, peer_url, for_party)
    partner.write(made, output)
    out.print(f"{output}: {made.party}'s partner file for {made.agreement}, peer API {made.peer_url}", soft_wrap=True)
    _show_fingerprint(made.fingerprint)


def _show_fingerprint(fingerprint: str) -> None:

    # Sixteen groups on a line of their own: 79 columns, unbroken on an 80-column terminal.
    out.print("fingerprint (SHA-256 of the file's content):")
    out.print(fingerprint, soft_wrap=True)


def node_import_partner_file(
    file: Annotated[Path, typer.Argument(help="The partner's file (from its export-partner-file).")],
    config: Annotated[Path, typer.Option("--config", help="The node's node.toml.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask: the fingerprint was compared with the partner already.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the file imported earlier for this partner.")
    ] = False,
) -> None:
    """Record the partner from its file, once its fingerprint is confirmed out of band.

    Shows the file's party, peer address, key and certificate and its fingerprint, asks
    (unless --yes), then records its keys, certificate and peer address for `node serve`
    (keys/ and node.toml). The same file again changes nothing; a different one for a
    known partner needs --replace."""
    from gsomia.node.runtime import config as node_config
    from gsomia.node.setup import partner

    cfg = node_config.load(config)
    found = partner.load(file)
    step = partner.plan(cfg, found, replace)  # a refusal comes before the question
    cert = found.certificate()
    out.print(f"partner {found.party} under {found.agreement} ({found.suite})", soft_wrap=True)
    out.print(
        f"  peer API: {found.peer_url}" + (f", flash: {found.flash_url}" if found.flash_url else "") + "\n"
        f"  key: {found.current_kid} ({count(len(found.rotations), 'rotation')} since {found.anchor.kid})\n"
        f"  TLS certificate: {cert.subject.rfc4514_string()}, valid until "
        f"{cert.not_valid_after_utc.date().isoformat()}",
        soft_wrap=True,
    )
    _show_fingerprint(found.fingerprint)
    if step == "same":
        out.print(f"{found.party}: this file is already imported; nothing changed")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("compare the fingerprint with the partner's security authority, then import with --yes")
        if not typer.confirm("Is this the fingerprint the partner's security authority read to you?"):
            raise InvalidInput("not imported: the fingerprint was not confirmed")
    result = partner.record(cfg, found, replace)
    verb = "replaced" if result.replaced else "recorded"
    out.print(
        f"{found.party} {verb} in {cfg.path}: peers.{found.party}; restart `gsomia node serve` to use it",
        soft_wrap=True,
    )


app.command("init")(node_init)
app.command("export-partner-file")(node_export_partner_file)
app.command("import-partner-file")(node_import_partner_file)
