"""``node.toml``: one node per party. Paths are relative to the file's directory.

```toml
party = "KOR"
agreements = ["../../agreements/jp-kr-gsomia-2016.toml"]
database_url = "sqlite:///node.db"        # or postgresql+psycopg://user@host/db
# Optional, PostgreSQL only: the flash lane's own database (R17), best on a server of its own:
# a commit waits for all the write-ahead log written before it, bulk items' included.
# flash_database_url = "postgresql+psycopg://user@flash-host/kor_flash"
key = "keys/KOR.key"                      # signing + KEM keys (gsomia keys generate);
                                          # retired ones in keys/retired/ (gsomia keys rotate)
tls_cert = "keys/KOR.crt"                 # the node's TLS certificate and key (user and peer API)
tls_key = "keys/KOR.tls.key"
listen = "127.0.0.1:8701"                 # user API (bearer tokens, HTTPS)
user_tls = true                           # false: plain HTTP, refused unless listen is loopback
peer_listen = "127.0.0.1:8711"            # peer API (mutual TLS)
demo = false                              # a simulated clock, demo only
# Optional: flash work (R17) in a process of its own, on ports of its own (``node/link.py``).
flash_listen = "127.0.0.1:8721"           # its user API: duty officers' POST /alerts and alert streams
flash_peer_listen = "127.0.0.1:8731"      # its peer API: partners send flash-lane deliveries here
bulk_nice = 19                            # the main process's CPU priority drops by this much (0-19)
bulk_idle = true                          # and its bulk work runs as SCHED_IDLE
flash_realtime = true                     # the flash process runs as SCHED_RR where permitted
max_streams_per_user = 4                  # open alert streams per user and process (429 beyond)

[peers.JPN]
url = "https://127.0.0.1:8712"
flash_url = "https://127.0.0.1:8732"      # optional: JPN's flash peer API (default: url)
public_key = "keys/JPN.pub"
tls_cert = "keys/JPN.crt"
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsomia.core.agreement import route, terms
from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import AgreementFileError
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.node.runtime import tls
from gsomia.store.files import load_private, load_public, read_bytes

_KEYS = {
    "party",
    "agreements",
    "database_url",
    "flash_database_url",
    "key",
    "tls_cert",
    "tls_key",
    "listen",
    "user_tls",
    "peer_listen",
    "flash_listen",
    "flash_peer_listen",
    "bulk_nice",
    "bulk_idle",
    "flash_realtime",
    "max_streams_per_user",
    "demo",
    "peers",
}
_PEER_KEYS = {"url", "public_key", "tls_cert"}
_PEER_OPTIONAL = {"flash_url"}


@dataclass(frozen=True)
class Peer:
    party: str
    url: str
    public_key: PublicKeys
    tls_cert: Path
    flash_url: str | None = None  # the partner's flash process, if it runs one


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    party: str
    agreements: tuple[Agreement, ...]
    database_url: str
    key: PrivateKeys
    key_path: Path
    tls_cert: Path
    tls_key: Path
    listen: tuple[str, int]
    peer_listen: tuple[str, int]
    demo: bool
    peers: dict[str, Peer]
    # The flash process's user and peer API (both or neither), and how far the main process
    # lowers its CPU priority when there is one: its nice value, and Linux's SCHED_IDLE policy;
    # and whether the flash process asks for Linux's real-time SCHED_RR policy.
    flash_listen: tuple[str, int] | None = None
    flash_peer_listen: tuple[str, int] | None = None
    bulk_nice: int = 19
    bulk_idle: bool = True
    flash_realtime: bool = True
    # The flash lane's own PostgreSQL database, where it has one (``store.flash``).
    flash_database_url: str | None = None
    # Alert streams one user may hold open at once in each process of the node (429 beyond).
    max_streams_per_user: int = 4
    # The user API (and the flash process's) over HTTPS with ``tls_cert``; false only on loopback.
    user_tls: bool = True

    def agreement_with(self, party: str) -> Agreement:
        """The bilateral agreement between this node's party and ``party``."""
        return terms.bilaterals(self.agreements, self.party)[party]  # KeyError: none


def _address(source: str, key: str, value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise AgreementFileError(source, key, "must be HOST:PORT, e.g. 127.0.0.1:8701")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AgreementFileError(source, key, f"port {port!r} is not a TCP port")
    return host, int(port)


def _flag(source: str, key: str, value: Any) -> bool:
    # TOML has booleans: "false" as a string must not switch the simulated clock on.
    if not isinstance(value, bool):
        raise AgreementFileError(source, key, "must be true or false (a TOML boolean, unquoted)")
    return value


class _File:
    """The parsed file, with the checks every key shares; paths are relative to its directory."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        self.base = path.parent
        try:
            self.data: dict[str, Any] = tomllib.loads(read_bytes(path, "node configuration").decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise AgreementFileError(self.source, "", f"malformed TOML ({exc})") from None
        unknown = set(self.data) - _KEYS
        if unknown:
            raise AgreementFileError(
                self.source, sorted(unknown)[0], f"unknown key (expected one of: {', '.join(sorted(_KEYS))})"
            )

    def need(self, key: str, kind: type = str) -> Any:
        if key not in self.data:
            raise AgreementFileError(self.source, key, "missing")
        if not isinstance(self.data[key], kind):
            raise AgreementFileError(self.source, key, f"must be {kind.__name__}")
        return self.data[key]

    def rel(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base / p

    def address(self, key: str, required: bool = True) -> tuple[str, int]:
        """HOST:PORT; an optional key (present) is checked as an address only."""
        return _address(self.source, key, self.need(key) if required else self.data[key])

    def flag(self, key: str, default: bool) -> bool:
        return _flag(self.source, key, self.data.get(key, default))

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise AgreementFileError(self.source, key, f"must be a whole number from {low} to {high}")
        return value


def load(path: Path) -> NodeConfig:
    """The node's configuration from ``path``, every key checked and every file it names loaded."""
    file = _File(path)
    party = file.need("party")
    agreements = tuple(terms.load(file.rel(f)) for f in file.need("agreements", list))
    url, flash_db = _databases(file)
    key_path = file.rel(file.need("key"))
    key = load_private(key_path)
    if key.party != party:
        raise AgreementFileError(file.source, "key", f"is {key.party}'s key, not {party}'s")
    peers = {code: _peer(file, code, raw) for code, raw in file.need("peers", dict).items()}
    flash = _flash_process(file)
    nice = file.whole("bulk_nice", 19, 0, 19)
    streams = file.whole("max_streams_per_user", 4, 1, 1000)
    config = NodeConfig(
        path=path,
        party=party,
        agreements=agreements,
        database_url=url,
        key=key,
        key_path=key_path,
        tls_cert=file.rel(file.need("tls_cert")),
        tls_key=file.rel(file.need("tls_key")),
        listen=file.address("listen"),
        peer_listen=file.address("peer_listen"),
        demo=file.flag("demo", False),
        peers=peers,
        flash_listen=file.address("flash_listen", required=False) if flash else None,
        flash_peer_listen=file.address("flash_peer_listen", required=False) if flash else None,
        bulk_nice=nice,
        bulk_idle=file.flag("bulk_idle", True),
        flash_realtime=file.flag("flash_realtime", True),
        flash_database_url=flash_db,
        max_streams_per_user=streams,
        user_tls=file.flag("user_tls", True),
    )
    _check_user_tls(file.source, config)
    _check_addresses(file.source, config)
    _check_agreements(file.source, config)
    return config


def _databases(file: _File) -> tuple[str, str | None]:
    """``database_url`` (a relative SQLite file made absolute) and ``flash_database_url``."""
    url: str = file.need("database_url")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{file.rel(url.removeprefix('sqlite:///'))}"
    flash_db = file.data.get("flash_database_url")
    if flash_db is not None:
        if not isinstance(flash_db, str) or not flash_db.startswith("postgresql"):
            raise AgreementFileError(file.source, "flash_database_url", "must be a postgresql+psycopg:// URL")
        if not url.startswith("postgresql"):
            raise AgreementFileError(
                file.source,
                "flash_database_url",
                "needs a PostgreSQL database_url (on SQLite the flash file is beside it)",
            )
        if flash_db == url:
            raise AgreementFileError(
                file.source, "flash_database_url", "is database_url itself: leave it out to share it"
            )
    return url, flash_db


def _peer(file: _File, code: str, raw: Any) -> Peer:
    """One ``[peers.PARTY]`` table: its URLs (mutual TLS), public key and certificate."""
    source = file.source
    if not isinstance(raw, dict):
        raise AgreementFileError(source, f"peers.{code}", "must be a table")
    extra = set(raw) - _PEER_KEYS - _PEER_OPTIONAL
    if extra:
        raise AgreementFileError(source, f"peers.{code}.{sorted(extra)[0]}", "unknown key")
    for k in _PEER_KEYS:
        if not isinstance(raw.get(k), str):
            raise AgreementFileError(source, f"peers.{code}.{k}", "missing")
    pub = load_public(file.rel(raw["public_key"]))
    if pub.party != code:
        raise AgreementFileError(source, f"peers.{code}.public_key", f"is {pub.party}'s key")
    flash_url = raw.get("flash_url")
    for k in ("url", "flash_url") if flash_url is not None else ("url",):
        if not (isinstance(raw[k], str) and raw[k].startswith("https://")):
            raise AgreementFileError(source, f"peers.{code}.{k}", "must be an https:// URL (mutual TLS)")
    return Peer(
        code, raw["url"].rstrip("/"), pub, file.rel(raw["tls_cert"]), flash_url.rstrip("/") if flash_url else None
    )


def _flash_process(file: _File) -> bool:
    """Whether the node runs a flash process: both of its addresses are given, or neither."""
    flash = [k for k in ("flash_listen", "flash_peer_listen") if k in file.data]
    if len(flash) == 1:
        other = ({"flash_listen", "flash_peer_listen"} - set(flash)).pop()
        raise AgreementFileError(file.source, other, f"missing (a flash process needs both {flash[0]} and {other})")
    return bool(flash)


def _check_user_tls(source: str, config: NodeConfig) -> None:
    if config.user_tls:
        return
    # Bearer tokens in clear text: only where nothing but this machine can see them.
    for name, address in (("listen", config.listen), ("flash_listen", config.flash_listen)):
        if address is not None and not tls.is_loopback(address[0]):
            raise AgreementFileError(
                source,
                "user_tls",
                f"false (plain HTTP) is allowed only on a loopback address, and {name} is {address[0]}: "
                "remove user_tls to serve HTTPS",
            )


def _check_addresses(source: str, config: NodeConfig) -> None:
    """No two of the node's listening addresses are the same."""
    named = {
        "listen": config.listen,
        "peer_listen": config.peer_listen,
        "flash_listen": config.flash_listen,
        "flash_peer_listen": config.flash_peer_listen,
    }
    ports = [(name, address) for name, address in named.items() if address is not None]
    for n, (name, address) in enumerate(ports):
        for earlier, seen in ports[:n]:
            if address == seen:
                raise AgreementFileError(source, name, f"is the same address as {earlier}")


def _check_agreements(source: str, config: NodeConfig) -> None:
    """Every peer is a party to one of the agreements loaded, and every arrangement through a
    hub has loaded beside it the agreements that carry this node's hops: its own to the hub,
    or, on the hub, each party's."""
    by_id = {a.id: a for a in config.agreements}
    pairs: dict[frozenset[str], str] = {}
    for agreement in config.agreements:
        if len(agreement.parties) == 2:  # one bilateral agreement per pair: items go under it
            pair = frozenset(agreement.parties)
            if pair in pairs:
                raise AgreementFileError(
                    source,
                    "agreements",
                    f"{pairs[pair]} and {agreement.id} are both between {' and '.join(sorted(pair))}",
                )
            pairs[pair] = agreement.id
    for agreement in config.agreements:
        hub = agreement.hub
        if hub is None:
            continue
        others = [p for p in agreement.parties if p != hub] if config.party == hub else [config.party]
        for other in others:
            try:
                route.carrier(agreement, (hub, other), by_id)
            except route.RouteError as exc:
                raise AgreementFileError(source, "agreements", str(exc)) from None
    for code in config.peers:
        try:
            config.agreement_with(code)
        except KeyError:
            raise AgreementFileError(
                source, f"peers.{code}", f"no agreement between {config.party} and {code} is loaded"
            ) from None
