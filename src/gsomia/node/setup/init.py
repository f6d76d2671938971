"""A node's directory: its keys, its TLS certificate, its ``node.toml`` and its database.

``gsomia node init`` makes one for a party on its own machine; ``provision`` makes two on
one machine for the demo, the tests and the benchmarks with the same functions, so the
nodes those run are laid out as a party's would be.

Layout of ``DIR`` (0700, its operator's alone):

- ``node.toml`` (0600: a database URL may carry a password)
- ``keys/PARTY.key`` (0600) and ``keys/PARTY.pub``: the node's KEM and signature keys
- ``keys/PARTY.tls.key`` (0600) and ``keys/PARTY.crt``: the TLS key and certificate of both APIs
- ``keys/PARTNER.pub``, ``keys/PARTNER.crt``: the partner's, from its partner file (``partner``)
- ``node.db``: the SQLite database, where ``database_url`` is the default
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gsomia.core import keys
from gsomia.core.agreement import terms
from gsomia.core.agreement.terms import SUITES, Agreement
from gsomia.core.errors import InvalidInput
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import tls
from gsomia.store.db import open_node_database
from gsomia.store.files import atomic_output, private_dir

DEFAULT_LISTEN = "127.0.0.1:8701"
DEFAULT_PEER_LISTEN = "127.0.0.1:8711"
DEFAULT_DATABASE = "sqlite:///node.db"
WILDCARDS = {"0.0.0.0", "::", "[::]", "*", ""}  # noqa: S104 - recognised, to be refused where a host is needed
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def check_party(party: str, option: str = "--party") -> str:
    if len(party) != 3 or not party.isascii() or not party.isalpha() or not party.isupper():
        raise InvalidInput(f"{option}: {party!r} is not an ISO 3166-1 alpha-3 code such as KOR")
    return party


def check_host(host: str, option: str = "--host") -> str:
    """A host name or IP address a certificate can name (no scheme, port or path)."""
    bare = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    if not _HOST_NAME.match(host):
        raise InvalidInput(f"{option}: {host!r} is not a host name or IP address")
    return host


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); ``0.0.0.0`` binds every interface."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{option}: {text!r} is not HOST:PORT with a TCP port, e.g. 127.0.0.1:8701")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise InvalidInput(f"{option}: {text!r}: write an IPv6 address in brackets, e.g. [::1]:8701")
    if host not in WILDCARDS:
        check_host(host, option)
    if not host:
        raise InvalidInput(f"{option}: {text!r} has no host; write 0.0.0.0:{port} for every interface")
    return host, int(port)


def certificate_hosts(addresses: Sequence[tuple[str, int]], names: Sequence[str]) -> tuple[str, ...]:
    """The names the node's certificate must carry: each address it binds that is not a
    wildcard (clients call it there), then the ``--host`` names (how others reach it), and
    ``localhost`` beside a loopback address."""
    hosts: list[str] = []
    for host in [a[0].removeprefix("[").removesuffix("]") for a in addresses if a[0] not in WILDCARDS]:
        if host not in hosts:
            hosts.append(host)
    for name in names:
        checked = check_host(name)
        if checked not in hosts:
            hosts.append(checked)
    if any(tls.is_loopback(h) for h in hosts) and "localhost" not in hosts:
        hosts.append("localhost")  # the name this machine's own clients call a loopback address by
    return tuple(hosts)


@dataclass(frozen=True)
class KeyFiles:
    key: Path
    public: Path
    tls_cert: Path
    tls_key: Path


def key_files(directory: Path, party: str) -> KeyFiles:
    return KeyFiles(
        directory / f"{party}.key",
        directory / f"{party}.pub",
        directory / f"{party}.crt",
        directory / f"{party}.tls.key",
    )


def write_node_keys(files: KeyFiles, party: str, suite: str) -> keys.PrivateKeys:
    """A new key pair for ``party``'s node: the private file 0600, the public one beside it."""
    if suite not in SUITES:
        raise InvalidInput(f"--suite: {suite!r} is not one of {', '.join(SUITES)}")
    private = keys.generate(party, suite)
    with atomic_output(files.key, mode=0o600) as f:
        f.write(private.to_bytes())
    with atomic_output(files.public) as f:
        f.write(private.public().to_bytes())
    return private


def write_tls(files: KeyFiles, party: str, hosts: Sequence[str], now: datetime) -> None:
    """A new TLS certificate naming ``hosts`` and its key (0600) for both of the node's APIs."""
    cert, tls_key = tls.make_certificate(party, now, tuple(hosts))
    with atomic_output(files.tls_key, mode=0o600) as f:
        f.write(tls_key)
    with atomic_output(files.tls_cert) as f:
        f.write(cert)


def write_keys(
    directory: Path, party: str, suite: str, hosts: Sequence[str], now: datetime
) -> tuple[KeyFiles, keys.PrivateKeys]:
    """A party's node keys and TLS certificate in ``directory`` (made 0700)."""
    private_dir(directory)
    files = key_files(directory, party)
    private = write_node_keys(files, party, suite)
    write_tls(files, party, hosts, now)
    return files, private


@dataclass(frozen=True)
class PeerEntry:
    """One ``[peers.X]`` table of ``node.toml``; paths relative to the node's directory."""

    party: str
    url: str
    public_key: str
    tls_cert: str
    flash_url: str | None = None

    def toml(self) -> str:
        flash = f"flash_url = {_quote(self.flash_url)}\n" if self.flash_url else ""
        return (
            f"[peers.{check_party(self.party, 'peers')}]\nurl = {_quote(self.url)}\n{flash}"
            f"public_key = {_quote(self.public_key)}\ntls_cert = {_quote(self.tls_cert)}\n"
        )


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _quote(value: str) -> str:
    """A TOML basic string holding ``value`` exactly: every value ``node.toml`` is written with
    goes through here, so no value can end its string or line and add a key of its own. Quotes
    and backslashes escaped, control characters (DEL too) as ``\\uXXXX``."""
    return (
        '"'
        + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in value)
        + '"'
    )


def render_config(
    party: str,
    agreements: Sequence[Path],
    database_url: str,
    listen: tuple[str, int],
    peer_listen: tuple[str, int],
    now: datetime,
    peers: Sequence[PeerEntry] = (),
    user_tls: bool = True,
    demo: bool = False,
    flash_database_url: str | None = None,
    flash_listen: tuple[str, int] | None = None,
    flash_peer_listen: tuple[str, int] | None = None,
) -> str:
    """The text of ``node.toml`` (the format: ``node.config``)."""
    lines = [
        f"# gsomia node {party} (written {now.isoformat(timespec='seconds')})",
        f"party = {_quote(party)}",
        f"agreements = [{', '.join(_quote(str(a)) for a in agreements)}]",
        f"database_url = {_quote(database_url)}",
    ]
    if flash_database_url:
        lines.append(f"flash_database_url = {_quote(flash_database_url)}")
    lines += [
        f"key = {_quote(f'keys/{party}.key')}",
        f"tls_cert = {_quote(f'keys/{party}.crt')}",
        f"tls_key = {_quote(f'keys/{party}.tls.key')}",
        f"listen = {_quote(f'{listen[0]}:{listen[1]}')}",
    ]
    if not user_tls:
        lines.append("user_tls = false")
    lines.append(f"peer_listen = {_quote(f'{peer_listen[0]}:{peer_listen[1]}')}")
    if flash_listen and flash_peer_listen:
        lines.append(f"flash_listen = {_quote(f'{flash_listen[0]}:{flash_listen[1]}')}")
        lines.append(f"flash_peer_listen = {_quote(f'{flash_peer_listen[0]}:{flash_peer_listen[1]}')}")
    lines.append(f"demo = {'true' if demo else 'false'}")
    # The partners: `gsomia node import-partner-file` adds a [peers.X] table below. An empty
    # [peers] heading only while there is none: a key added at the end of the top-level keys
    # (before the first [peers.X]) then still belongs to the node, not to a table.
    text = "\n".join(lines) + ("\n" if peers else "\n\n[peers]\n")
    for peer in peers:
        text += "\n" + peer.toml()
    return text


def write_config(path: Path, text: str) -> None:
    with atomic_output(path, mode=0o600) as f:  # a database URL may carry a password
        f.write(text.encode())


@dataclass(frozen=True)
class Initialised:
    party: str
    directory: Path
    config: Path
    keys: KeyFiles
    kid: str
    hosts: tuple[str, ...]
    agreement: Agreement
    database_url: str


def holds_node(directory: Path) -> Path | None:
    """What in ``directory`` shows a node already lives there, if anything."""
    if (directory / "node.toml").exists():
        return directory / "node.toml"
    found = sorted((directory / "keys").glob("*.key")) if (directory / "keys").is_dir() else []
    return found[0] if found else None


def init_node(
    directory: Path,
    party: str,
    agreement_file: Path,
    listen: str = DEFAULT_LISTEN,
    peer_listen: str = DEFAULT_PEER_LISTEN,
    database_url: str = DEFAULT_DATABASE,
    suite: str | None = None,
    hosts: Sequence[str] = (),
    *,
    now: datetime,
) -> Initialised:
    """Make ``directory`` a node of ``party`` under the agreement in ``agreement_file``, at
    ``now`` (its certificate's start and node.toml's date).

    Everything is checked before anything is written; the database is made (its migrations
    run) last, and a database that cannot be opened undoes the files written before it."""
    check_party(party)
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"--dir: {directory} is a file, not a directory")
    existing = holds_node(directory)
    if existing is not None:
        raise InvalidInput(f"--dir: {directory} already holds a node ({existing}); choose another directory")
    agreement = terms.load(agreement_file)
    if party not in agreement.parties:
        raise InvalidInput(
            f"--party: {party} is not a party to {agreement.id} (its parties: {', '.join(agreement.parties)})"
        )
    if suite is not None and suite != agreement.suite:
        raise InvalidInput(f"--suite: {agreement.id} protects items with {agreement.suite}, not {suite}")
    user_address = parse_address(listen, "--listen")
    peer_address = parse_address(peer_listen, "--peer-listen")
    if user_address == peer_address:
        raise InvalidInput(f"--peer-listen: {peer_listen} is the same address as --listen")
    if not database_url.startswith(("sqlite:///", "postgresql")):
        raise InvalidInput(
            f"--database-url: {database_url.split(':', 1)[0]!r} is not supported "
            "(sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)"
        )
    names = certificate_hosts([user_address, peer_address], hosts)
    if not names:
        raise InvalidInput("--host: both addresses are wildcards; name the host the partner and users reach")
    created = not directory.exists()
    home = private_dir(directory)
    files, private = write_keys(home / "keys", party, agreement.suite, names, now)
    config_path = home / "node.toml"
    text = render_config(party, [agreement_file.resolve()], database_url, user_address, peer_address, now)
    write_config(config_path, text)
    try:
        cfg = node_config.load(config_path)
        open_node_database(cfg).dispose()  # the schema, every migration applied
    except BaseException:
        for path in (config_path, files.key, files.public, files.tls_cert, files.tls_key):
            path.unlink(missing_ok=True)
        for folder in (home / "keys", home) if created else (home / "keys",):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                folder.rmdir()
        raise
    return Initialised(party, home, config_path, files, private.public().kid, names, agreement, cfg.database_url)
