"""``node.toml``: one node per party. Paths are relative to the file's directory.

```toml
party = "KOR"
agreements = ["../../agreements/jp-kr-gsomia-2016.toml"]
database_url = "sqlite:///node.db"        # or postgresql+psycopg://user@host/db
key = "keys/KOR.key"                      # signing + KEM keys (gsomia keys generate);
                                          # retired ones in keys/retired/ (gsomia keys rotate)
tls_cert = "keys/KOR.crt"                 # peer API certificate and key
tls_key = "keys/KOR.tls.key"
listen = "127.0.0.1:8701"                 # user API (tokens)
peer_listen = "127.0.0.1:8711"            # peer API (mutual TLS)
demo = false                              # a simulated clock, demo only

[peers.JPN]
url = "https://127.0.0.1:8712"
public_key = "keys/JPN.pub"
tls_cert = "keys/JPN.crt"
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsomia.agreement import terms
from gsomia.agreement.terms import Agreement
from gsomia.errors import AgreementFileError
from gsomia.files import load_private, load_public, read_bytes
from gsomia.keys import PrivateKeys, PublicKeys

_KEYS = {"party", "agreements", "database_url", "key", "tls_cert", "tls_key", "listen", "peer_listen", "demo", "peers"}
_PEER_KEYS = {"url", "public_key", "tls_cert"}


@dataclass(frozen=True)
class Peer:
    party: str
    url: str
    public_key: PublicKeys
    tls_cert: Path


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
    key_path = rel(need("key"))
    key = load_private(key_path)
    if key.party != party:
        raise AgreementFileError(source, "key", f"is {key.party}'s key, not {party}'s")
    peers: dict[str, Peer] = {}
    for code, raw in need("peers", dict).items():
        if not isinstance(raw, dict):
            raise AgreementFileError(source, f"peers.{code}", "must be a table")
        extra = set(raw) - _PEER_KEYS
        if extra:
            raise AgreementFileError(source, f"peers.{code}.{sorted(extra)[0]}", "unknown key")
        for k in _PEER_KEYS:
            if not isinstance(raw.get(k), str):
                raise AgreementFileError(source, f"peers.{code}.{k}", "missing")
        pub = load_public(rel(raw["public_key"]))
        if pub.party != code:
            raise AgreementFileError(source, f"peers.{code}.public_key", f"is {pub.party}'s key")
        peers[code] = Peer(code, raw["url"].rstrip("/"), pub, rel(raw["tls_cert"]))
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
    )
    for code in peers:
        try:
            config.agreement_with(code)
        except KeyError:
            raise AgreementFileError(
                source, f"peers.{code}", f"no agreement between {party} and {code} is loaded"
            ) from None
    return config
