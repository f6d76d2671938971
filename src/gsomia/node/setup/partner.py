"""Partner files: how a node's public keys, certificate and peer address reach its partner.

A party's security authority exports its node's file (``gsomia node export-partner-file``)
and hands it to the partner's by any channel, e-mail included: the file holds nothing
secret, and what makes it trustworthy is its fingerprint, which the two authorities read to
each other out of band (telephone, fax) before the partner imports it. The fingerprint is
SHA-256 of the file's canonical content (keys sorted, no white space), so re-indenting the
file does not change it and changing any byte that matters does.

The file (JSON, ``kind = "gsomia-partner-file"``, ``v = 1``):

- ``party``, ``agreement`` (the agreement's id), ``suite``;
- ``public_key``: the node's first key (the anchor of its key chain) and ``rotations``: every
  rotation statement since, each signed by both of its keys (``keyring``), so the importing
  node trusts the current key through the chain and learns later rotations on contact;
- ``tls_cert``: the PEM certificate both of the node's APIs serve (the partner pins it);
- ``peer_url``: where the partner's node calls this node's peer API (mutual TLS), and
  ``flash_url`` where the node runs its flash lane in a process of its own (R17).

Importing writes ``keys/PARTY.pub``, ``keys/PARTY.crt`` and ``keys/PARTY.partner.json``
into the node's directory, a ``[peers.PARTY]`` table into its ``node.toml``, and the
rotation statements into its database, where ``node serve`` finds them all. The files go
all or nothing (``_install``): an import that fails leaves every one as it was. The same file
imported again changes nothing only if what is on disk is still what it says.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from gsomia.core.agreement.terms import Agreement, bilaterals
from gsomia.core.errors import GsomiaError, InvalidInput
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.core.keys import KeyFileInvalid, PublicKeys
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import keychain, tls
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.setup.init import WILDCARDS, PeerEntry, check_host, check_party, write_config
from gsomia.store.db import open_node_database
from gsomia.store.files import atomic_output, read_bytes

KIND = "gsomia-partner-file"
_FIELDS = {"kind", "v", "party", "agreement", "suite", "public_key", "rotations", "tls_cert", "peer_url"}
_OPTIONAL = {"flash_url"}
MAX_FILE = 1 << 20  # a partner file is a few kilobytes; anything far larger is not one


class PartnerFileInvalid(GsomiaError):
    """A partner file that does not parse, or whose keys, certificate or address are malformed."""


class PartnerRefused(GsomiaError):
    """A well-formed partner file this node must not import."""


@dataclass(frozen=True)
class PartnerFile:
    party: str
    agreement: str
    suite: str
    anchor: PublicKeys
    rotations: tuple[Rotation, ...]
    tls_cert: bytes
    peer_url: str
    flash_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": KIND,
            "v": 1,
            "party": self.party,
            "agreement": self.agreement,
            "suite": self.suite,
            "public_key": json.loads(self.anchor.to_bytes()),
            "rotations": [r.as_dict() for r in self.rotations],
            "tls_cert": self.tls_cert.decode("ascii"),
            "peer_url": self.peer_url,
        }
        if self.flash_url:
            data["flash_url"] = self.flash_url
        return data

    def canonical(self) -> bytes:
        return canonical(self.as_dict())

    def to_bytes(self) -> bytes:
        """What the exported file holds: the same content, indented for a reader."""
        return (json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode("ascii")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.canonical())

    @property
    def chain(self) -> KeyHistory:
        return KeyHistory.build(self.anchor, self.rotations)

    @property
    def current_kid(self) -> str:
        return self.chain.current.kid

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.tls_cert)


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def fingerprint(content: bytes) -> str:
    """SHA-256 of ``content`` in upper-case hex, in groups of four: read aloud, group by group."""
    digest = hashlib.sha256(content).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


_URL_REFUSED = re.compile(r"[\x00-\x20\x7f-\x9f\"'\\`<>{}|^]")  # control characters, quotes, space


def _https_url(value: Any, field: str) -> str:
    """``https://HOST:PORT`` (a trailing ``/`` allowed) and nothing else: a host name or IP
    address, a port, no user, path, query or fragment, no control character or quote. The
    URL is written into ``node.toml`` and called with the node's key: refused here, it can
    neither break the file nor carry a second meaning."""
    if not isinstance(value, str):
        raise PartnerFileInvalid(f"{field}: must be an https:// URL")
    shown = repr(value[:100]) + ("..." if len(value) > 100 else "")  # repr: one line, whatever it holds
    if not value.isascii() or _URL_REFUSED.search(value):
        raise PartnerFileInvalid(f"{field}: {shown} holds a control character, space, quote or non-ASCII letter")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise PartnerFileInvalid(f"{field}: {shown} is not a URL") from None
    if parts.scheme != "https" or "?" in value or "#" in value or parts.path not in ("", "/") or "@" in parts.netloc:
        raise PartnerFileInvalid(f"{field}: {shown} must be https://HOST:PORT (mutual TLS), nothing after it")
    if port is None or port == 0:
        raise PartnerFileInvalid(f"{field}: {shown} names no port")
    host = parts.hostname or ""
    if host in WILDCARDS:
        raise PartnerFileInvalid(f"{field}: {shown} is a wildcard address, not one the partner can call")
    try:
        checked = check_host(host, field)
    except InvalidInput:
        raise PartnerFileInvalid(f"{field}: {shown}: {host!r} is not a host name or IP address") from None
    netloc = (f"[{checked}]" if ":" in checked else checked) + f":{port}"
    if parts.netloc.lower() != netloc.lower():  # e.g. a port spelled 08711, or [v4] brackets
        raise PartnerFileInvalid(f"{field}: {shown} must be https://HOST:PORT (mutual TLS), nothing after it")
    return value.rstrip("/")


def _check_names(cert_pem: bytes, url: str, field: str) -> None:
    """The partner's client checks the host name against the certificate: refuse a URL it names not."""
    host = urlsplit(url).hostname or ""
    names = tls.names(cert_pem)
    if host.lower() not in {n.lower() for n in names}:
        raise PartnerFileInvalid(
            f"{field}: host {host} is not named by the TLS certificate (it names {', '.join(names) or 'nothing'})"
        )


def parse(raw: bytes, source: str = "partner file") -> PartnerFile:
    """Parse and check a partner file: its form, its keys, its key chain's signatures, its certificate."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise PartnerFileInvalid(f"{source}: not a gsomia partner file (not JSON)") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise PartnerFileInvalid(f"{source}: not a gsomia partner file (kind is not {KIND})")
    if data.get("v") != 1:
        raise PartnerFileInvalid(f"{source}: partner file version {data.get('v')!r} is not supported")
    missing = _FIELDS - set(data)
    if missing:
        raise PartnerFileInvalid(f"{source}: {sorted(missing)[0]} is missing")
    extra = set(data) - _FIELDS - _OPTIONAL
    if extra:
        raise PartnerFileInvalid(f"{source}: unknown field {sorted(extra)[0]}")
    try:
        party = check_party(data["party"] if isinstance(data["party"], str) else "", "party")
    except InvalidInput as exc:
        raise PartnerFileInvalid(f"{source}: {exc}") from None
    agreement = data["agreement"]
    if not isinstance(agreement, str) or not agreement:
        raise PartnerFileInvalid(f"{source}: agreement must be the agreement's id")
    try:
        anchor = PublicKeys.from_bytes(canonical(data["public_key"]), f"{source}: public_key")
        if not isinstance(data["rotations"], list):
            raise PartnerFileInvalid(f"{source}: rotations must be a list")
        rotations = tuple(Rotation.from_dict(r) for r in data["rotations"])
        chain = KeyHistory.build(anchor, rotations)
    except (KeyFileInvalid, KeyRotationInvalid) as exc:
        raise PartnerFileInvalid(f"{source}: {exc}") from None
    if anchor.party != party:
        raise PartnerFileInvalid(f"{source}: public_key is {anchor.party}'s key, not {party}'s")
    if rotations and chain.keys[0].kid != anchor.kid:
        raise PartnerFileInvalid(f"{source}: public_key is not the first key of its rotations")
    if data["suite"] != anchor.suite:
        raise PartnerFileInvalid(f"{source}: suite {data['suite']!r} is not the key's ({anchor.suite})")
    cert_text = data["tls_cert"]
    if not isinstance(cert_text, str) or not cert_text.isascii():
        raise PartnerFileInvalid(f"{source}: tls_cert must be a PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(cert_text.encode("ascii"))
    except ValueError:
        raise PartnerFileInvalid(f"{source}: tls_cert is not a PEM certificate") from None
    if not re.fullmatch(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?", cert_text):
        raise PartnerFileInvalid(f"{source}: tls_cert must hold exactly one PEM certificate")
    organisation = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    if organisation and organisation != [party]:
        raise PartnerFileInvalid(f"{source}: tls_cert is {organisation[0]!s}'s certificate, not {party}'s")
    peer_url = _https_url(data["peer_url"], f"{source}: peer_url")
    _check_names(cert_text.encode("ascii"), peer_url, f"{source}: peer_url")
    flash_url = None
    if "flash_url" in data:
        flash_url = _https_url(data["flash_url"], f"{source}: flash_url")
        _check_names(cert_text.encode("ascii"), flash_url, f"{source}: flash_url")
    return PartnerFile(
        party, agreement, anchor.suite, anchor, rotations, cert_text.encode("ascii"), peer_url, flash_url
    )


def load(path: Path) -> PartnerFile:
    raw = read_bytes(path, "partner file")
    if len(raw) > MAX_FILE:
        raise PartnerFileInvalid(f"{path}: {len(raw)} bytes is too large for a partner file")
    return parse(raw, str(path))


def _url_for(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host and not host.startswith("[") else f"https://{host}:{port}"


def export(config: NodeConfig, peer_url: str | None = None, partner: str | None = None) -> PartnerFile:
    """This node's partner file for ``partner``: its key chain as recorded in its database, its
    certificate, ``peer_url`` (default: its ``peer_listen`` address, unless that binds every
    interface) and the bilateral agreement the two share under. ``partner`` may be left out
    where the node has one bilateral agreement."""
    agreement = _bilateral_for(config, partner)
    engine = open_node_database(config)
    try:
        _, _, chain = keychain.resolve(config, engine)
    finally:
        engine.dispose()
    host, port = config.peer_listen
    if peer_url is None:
        if host in WILDCARDS:
            raise InvalidInput(
                f"--peer-url: peer_listen {host}:{port} binds every interface; "
                f"give the address the partner calls, e.g. --peer-url https://node.example:{port}"
            )
        peer_url = _url_for(host, port)
    flash_url = None
    if config.flash_peer_listen is not None:
        flash_url = _url_for(urlsplit(peer_url).hostname or host, config.flash_peer_listen[1])
    cert = read_bytes(config.tls_cert, "TLS certificate")
    made = PartnerFile(
        config.party,
        agreement.id,
        chain.keys[0].suite,
        chain.keys[0],
        chain.rotations,
        cert,
        peer_url,
        flash_url,
    )
    try:
        return parse(made.to_bytes(), "--peer-url")  # one set of checks for both ends
    except PartnerFileInvalid as exc:
        raise InvalidInput(
            f"{exc}: name it in the certificate with "
            f"gsomia keys generate --tls-only --force --party {config.party} --out {config.tls_cert.parent} --host NAME"
        ) from None


def _bilateral_for(config: NodeConfig, partner: str | None) -> Agreement:
    """The bilateral agreement a partner file names: the one with ``partner``."""
    bilateral = bilaterals(config.agreements, config.party)
    if partner is None:
        if len(bilateral) == 1:
            return next(iter(bilateral.values()))
        named = ", ".join(sorted(bilateral)) or "nobody"
        raise InvalidInput(
            f"--for: {config.party} has bilateral agreements with {named}; name the partner the file is for"
        )
    if partner not in bilateral:
        named = ", ".join(sorted(bilateral)) or "nobody"
        raise InvalidInput(f"--for: {config.party} has no bilateral agreement with {partner!r} (it has with {named})")
    return bilateral[partner]


def write(partner: PartnerFile, path: Path) -> None:
    with atomic_output(path) as f:
        f.write(partner.to_bytes())


@dataclass(frozen=True)
class Imported:
    partner: PartnerFile
    changed: bool  # false: the same file was imported before, nothing was written
    replaced: bool  # true: it replaced an earlier, different one


def _record_path(config: NodeConfig, party: str) -> Path:
    return config.tls_cert.parent / f"{party}.partner.json"


def check_for(config: NodeConfig, partner: PartnerFile) -> None:
    """Refuse a file for any party but this node's partner under the same agreement."""
    if partner.party == config.party:
        raise PartnerRefused(f"the file is {partner.party}'s own, this node's party: import the partner's file")
    for agreement in config.agreements:
        if set(agreement.parties) == {config.party, partner.party}:
            if agreement.id != partner.agreement:
                raise PartnerRefused(
                    f"the file is for agreement {partner.agreement}, and {config.party}'s agreement with "
                    f"{partner.party} is {agreement.id}"
                )
            if agreement.suite != partner.suite:
                raise PartnerRefused(f"{agreement.id} uses {agreement.suite} keys, and the file's are {partner.suite}")
            return
    others = sorted({p for a in config.agreements for p in a.parties if p != config.party})
    raise PartnerRefused(
        f"{partner.party} is not a party to this node's agreements: its partner is {', '.join(others) or 'nobody'}"
    )


def known(config: NodeConfig, party: str) -> PartnerFile | None:
    """The partner file imported before for ``party``, if any."""
    path = _record_path(config, party)
    return parse(path.read_bytes(), str(path)) if path.exists() else None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def on_disk(config: NodeConfig, partner: PartnerFile) -> bool:
    """Whether what ``node serve`` would use for ``partner.party`` is the file's: its key and
    certificate files, and the ``[peers.PARTY]`` table (the address, and the files it names)."""
    folder = config.tls_cert.parent
    peer = config.peers.get(partner.party)
    return (
        peer is not None
        and peer.url == partner.peer_url
        and peer.flash_url == partner.flash_url
        and peer.public_key.to_bytes() == partner.anchor.to_bytes()
        and _read(peer.tls_cert) == partner.tls_cert
        and _read(folder / f"{partner.party}.pub") == partner.anchor.to_bytes()
        and _read(folder / f"{partner.party}.crt") == partner.tls_cert
    )


def _peer_block(text: str, party: str) -> tuple[int, int] | None:
    """Where the ``[peers.PARTY]`` table is in ``node.toml``'s text: (start, end) offsets."""
    header = re.search(rf"(?m)^\[peers\.{party}\][ \t]*(#.*)?$", text)
    if header is None:
        return None
    following = re.search(r"(?m)^\[", text[header.end() :])
    return header.start(), header.end() + following.start() if following else len(text)


def plan(config: NodeConfig, partner: PartnerFile, replace: bool = False) -> str:
    """What importing ``partner`` does: ``same`` (imported before: nothing), ``new`` or ``replace``;
    refused for another party, or for a known partner's different file without ``replace``."""
    check_for(config, partner)
    earlier = known(config, partner.party)
    if earlier is not None and earlier.canonical() == partner.canonical():
        if on_disk(config, partner):
            return "same"
        return "replace"  # the file confirmed before, and what the node would use differs: put it back
    if earlier is None and partner.party not in config.peers:
        return "new"
    if not replace:
        raise PartnerRefused(
            f"{partner.party} is already this node's partner with another file ({config.path}: peers.{partner.party}); "
            "compare the fingerprint with its security authority, then import with --replace"
        )
    return "replace"


def record(config: NodeConfig, partner: PartnerFile, replace: bool = False) -> Imported:
    """Record ``partner`` in the node's directory, node.toml and database (see the module)."""
    step = plan(config, partner, replace)
    if step == "same":
        return Imported(partner, changed=False, replaced=False)
    folder = config.tls_cert.parent
    # The rotations first, in the node's database: a chain that contradicts the one recorded
    # is refused before any file changes.
    engine = open_node_database(config)
    try:
        with engine.connect() as conn:
            recorded = keychain.rotations(conn, partner.party)
        if recorded:
            mine = KeyHistory.build(recorded[0].old, recorded)
            if mine.by_kid(partner.anchor.kid) is None:
                raise PartnerRefused(
                    f"the file's key {partner.anchor.kid} is not in the key chain this node recorded for "
                    f"{partner.party} (current key {mine.current.kid})"
                )
            keychain.learn(engine, mine, list(partner.rotations), "import-partner-file")
        else:
            keychain.learn(engine, KeyHistory.start(partner.anchor), list(partner.rotations), "import-partner-file")
    finally:
        engine.dispose()
    relative = folder.relative_to(config.path.parent) if folder.is_relative_to(config.path.parent) else folder
    entry = PeerEntry(
        partner.party,
        partner.peer_url,
        f"{relative}/{partner.party}.pub",
        f"{relative}/{partner.party}.crt",
        partner.flash_url,
    )
    text = config.path.read_text(encoding="utf-8")
    place = _peer_block(text, partner.party)
    if place is None:
        updated = text.rstrip("\n") + "\n\n" + entry.toml()
    else:
        start, end = place
        tail = text[end:]
        updated = text[:start] + entry.toml() + ("\n" + tail if tail else "")
    _install(
        config,
        {
            folder / f"{partner.party}.pub": partner.anchor.to_bytes(),
            folder / f"{partner.party}.crt": partner.tls_cert,
            _record_path(config, partner.party): partner.to_bytes(),
        },
        updated,
    )
    return Imported(partner, changed=True, replaced=step == "replace")


def _install(config: NodeConfig, files: dict[Path, bytes], updated: str) -> None:
    """All or nothing: ``files`` and ``node.toml``'s new text in place, and the node's
    configuration loading with them; or, on any failure, every one of them as it was.

    The new files are written beside their places under other names first (a full disk fails
    there, before anything changed); then node.toml, then the renames, the record last; then
    the configuration is loaded as ``node serve`` will load it, from the files in place (on a
    first import, the key files it names exist only then)."""
    before = {path: (_read(path), path.stat().st_mode & 0o777 if path.exists() else 0) for path in files}
    text = config.path.read_text(encoding="utf-8")
    staged: dict[Path, Path] = {}
    try:
        for path, content in files.items():
            staged[path] = path.with_name(f".{path.name}.import")
            with atomic_output(staged[path]) as f:
                f.write(content)
        write_config(config.path, updated)
        for path, new in staged.items():
            os.replace(new, path)
        node_config.load(config.path)
    except BaseException as exc:
        write_config(config.path, text)
        for path, (old, mode) in before.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                with atomic_output(path, mode=mode) as f:
                    f.write(old)
        for new in staged.values():
            new.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InvalidInput(f"{config.path}: cannot import ({exc.strerror or exc}); nothing changed") from None
        raise
