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

from gsomia.core.agreement import terms
from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import AgreementFileError
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.node import tls
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
        for a in self.agreements:
            if set(a.parties) == {self.party, party}:
                return a
        raise KeyError(party)


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


def load(path: Path) -> NodeConfig:
    source = str(path)
    try:
        data = tomllib.loads(read_bytes(path, "node configuration").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AgreementFileError(source, "", f"malformed TOML ({exc})") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise AgreementFileError(
            source, sorted(unknown)[0], f"unknown key (expected one of: {', '.join(sorted(_KEYS))})"
        )
    base = path.parent

    def need(key: str, kind: type = str) -> Any:
        if key not in data:
            raise AgreementFileError(source, key, "missing")
        if not isinstance(data[key], kind):
            raise AgreementFileError(source, key, f"must be {kind.__name__}")
        return data[key]

    def rel(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else base / p

    party = need("party")
    files = need("agreements", list)
    agreements = tuple(terms.load(rel(f)) for f in files)
    url = need("database_url")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{rel(url.removeprefix('sqlite:///'))}"
    flash_db = data.get("flash_database_url")
    if flash_db is not None:
        if not isinstance(flash_db, str) or not flash_db.startswith("postgresql"):
            raise AgreementFileError(source, "flash_database_url", "must be a postgresql+psycopg:// URL")
        if not url.startswith("postgresql"):
            raise AgreementFileError(
                source, "flash_database_url", "needs a PostgreSQL database_url (on SQLite the flash file is beside it)"
            )
        if flash_db == url:
            raise AgreementFileError(source, "flash_database_url", "is database_url itself: leave it out to share it")
    key_path = rel(need("key"))
    key = load_private(key_path)
    if key.party != party:
        raise AgreementFileError(source, "key", f"is {key.party}'s key, not {party}'s")
    peers: dict[str, Peer] = {}
    for code, raw in need("peers", dict).items():
        if not isinstance(raw, dict):
            raise AgreementFileError(source, f"peers.{code}", "must be a table")
        extra = set(raw) - _PEER_KEYS - _PEER_OPTIONAL
        if extra:
            raise AgreementFileError(source, f"peers.{code}.{sorted(extra)[0]}", "unknown key")
        for k in _PEER_KEYS:
            if not isinstance(raw.get(k), str):
                raise AgreementFileError(source, f"peers.{code}.{k}", "missing")
        pub = load_public(rel(raw["public_key"]))
        if pub.party != code:
            raise AgreementFileError(source, f"peers.{code}.public_key", f"is {pub.party}'s key")
        flash_url = raw.get("flash_url")
        for k in ("url", "flash_url") if flash_url is not None else ("url",):
            if not (isinstance(raw[k], str) and raw[k].startswith("https://")):
                raise AgreementFileError(source, f"peers.{code}.{k}", "must be an https:// URL (mutual TLS)")
        peers[code] = Peer(
            code, raw["url"].rstrip("/"), pub, rel(raw["tls_cert"]), flash_url.rstrip("/") if flash_url else None
        )
    flash = [k for k in ("flash_listen", "flash_peer_listen") if k in data]
    if len(flash) == 1:
        other = ({"flash_listen", "flash_peer_listen"} - set(flash)).pop()
        raise AgreementFileError(source, other, f"missing (a flash process needs both {flash[0]} and {other})")
    nice = data.get("bulk_nice", 19)
    if not isinstance(nice, int) or isinstance(nice, bool) or not 0 <= nice <= 19:
        raise AgreementFileError(source, "bulk_nice", "must be a whole number from 0 to 19")
    streams = data.get("max_streams_per_user", 4)
    if not isinstance(streams, int) or isinstance(streams, bool) or not 1 <= streams <= 1000:
        raise AgreementFileError(source, "max_streams_per_user", "must be a whole number from 1 to 1000")
    config = NodeConfig(
        path=path,
        party=party,
        agreements=agreements,
        database_url=url,
        key=key,
        key_path=key_path,
        tls_cert=rel(need("tls_cert")),
        tls_key=rel(need("tls_key")),
        listen=_address(source, "listen", need("listen")),
        peer_listen=_address(source, "peer_listen", need("peer_listen")),
        demo=_flag(source, "demo", data.get("demo", False)),
        peers=peers,
        flash_listen=_address(source, "flash_listen", data["flash_listen"]) if flash else None,
        flash_peer_listen=_address(source, "flash_peer_listen", data["flash_peer_listen"]) if flash else None,
        bulk_nice=nice,
        bulk_idle=_flag(source, "bulk_idle", data.get("bulk_idle", True)),
        flash_realtime=_flag(source, "flash_realtime", data.get("flash_realtime", True)),
        flash_database_url=flash_db,
        max_streams_per_user=streams,
        user_tls=_flag(source, "user_tls", data.get("user_tls", True)),
    )
    if not config.user_tls:
        # Bearer tokens in clear text: only where nothing but this machine can see them.
        for name, address in (("listen", config.listen), ("flash_listen", config.flash_listen)):
            if address is not None and not tls.is_loopback(address[0]):
                raise AgreementFileError(
                    source,
                    "user_tls",
                    f"false (plain HTTP) is allowed only on a loopback address, and {name} is {address[0]}: "
                    "remove user_tls to serve HTTPS",
                )
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
    for code in peers:
        try:
            config.agreement_with(code)
        except KeyError:
            raise AgreementFileError(
                source, f"peers.{code}", f"no agreement between {party} and {code} is loaded"
            ) from None
    return config
