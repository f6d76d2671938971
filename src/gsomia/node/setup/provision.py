"""Provision nodes on loopback: keys, certificates, node.toml, users, tokens.

Used by the demo, the integration tests and the benchmarks, so all three run the
same nodes a party would run, only on one machine: the keys, certificate and node.toml
are written by the functions ``gsomia node init`` uses (``node.init``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gsomia.core.agreement import terms
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import tls
from gsomia.node.runtime.clock import Clock, SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.init import PeerEntry, render_config, write_config, write_keys
from gsomia.store.db import open_node_database
from gsomia.store.files import atomic_output, private_dir

DEMO_USERS = {
    "KOR": [
        ("kor.analyst", "analyst", "군사II급비밀", ["nk-missile", "nk-nuclear"]),
        ("kor.duty", "duty_officer", "군사II급비밀", ["nk-missile", "flash"]),
        ("kor.authority", "security_authority", "군사I급비밀", ["nk-missile", "nk-nuclear", "flash"]),
        ("kor.auditor", "auditor", None, []),
    ],
    "JPN": [
        ("jpn.analyst", "analyst", "極秘", ["nk-missile", "nk-nuclear"]),
        ("jpn.duty", "duty_officer", "極秘", ["nk-missile", "flash"]),
        ("jpn.authority", "security_authority", "特定秘密", ["nk-missile", "nk-nuclear", "flash"]),
        ("jpn.auditor", "auditor", None, []),
    ],
    "USA": [
        ("usa.analyst", "analyst", "SECRET", ["nk-missile", "nk-nuclear"]),
        ("usa.duty", "duty_officer", "SECRET", ["nk-missile", "flash"]),
        ("usa.authority", "security_authority", "TOP SECRET", ["nk-missile", "nk-nuclear", "flash"]),
        ("usa.auditor", "auditor", None, []),
    ],
}
ROLE_KEYS = {
    "analyst": "analyst",
    "duty_officer": "duty_officer",
    "security_authority": "security_authority",
    "auditor": "auditor",
}


_HANDED_OUT: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_range() -> tuple[int, int]:
    """[low, top): below the ephemeral range, or ``GSOMIA_PORTS=low-top`` (test runs in parallel
    give each its own slice, so two never hand out the same port)."""
    given = os.environ.get("GSOMIA_PORTS", "")
    low_text, _, top_text = given.partition("-")
    if low_text.isdigit() and top_text.isdigit() and 1024 <= int(low_text) < int(top_text) <= 65536:
        return int(low_text), int(top_text)
    top = _ephemeral_start()
    return max(1024, min(20000, top - 4096)), top


def free_port() -> int:
    """A loopback port free now, below the ephemeral range.

    The kernel's own choice (bind to port 0) comes from the ephemeral range, which every
    outgoing connection (to PostgreSQL, between the nodes) also draws from: one of those
    could take the port before the node binds it ("address already in use"). Ports below
    the range are only ever taken by servers, and each is handed out once per process.
    """
    low, top = port_range()
    for _ in range(200):
        port = secrets.randbelow(top - low) + low
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # a crowded range: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Provisioned:
    party: str
    root: Path
    config: Path
    user_url: str
    tokens: dict[str, str]
    flash_user_url: str | None = None  # the flash process's user API, if the node runs one

    @property
    def alerts_url(self) -> str:
        """Where duty officers post and follow flash reports (R17)."""
        return self.flash_user_url or self.user_url

    @property
    def tls_cert(self) -> Path:
        """The node's certificate: what its users' clients trust to reach the user API over HTTPS."""
        return self.root / "keys" / f"{self.party}.crt"

    def trust(self) -> ssl.SSLContext:
        """httpx's ``verify=`` for this node's user API: its own certificate, nothing else."""
        return tls.trust(self.tls_cert)


def provision_pair(
    root: Path,
    agreement_file: Path,
    database_urls: dict[str, str] | None = None,
    demo: bool = False,
    suite: str = "classic",
    parties: tuple[str, str] = ("KOR", "JPN"),
    flash_process: bool = False,
    flash_database_urls: dict[str, str] | None = None,
    user_tls: bool = False,
    clock: Clock | None = None,
) -> dict[str, Provisioned]:
    """``provision`` for the two parties of one bilateral agreement."""
    return provision(
        root,
        [agreement_file],
        parties,
        database_urls=database_urls,
        demo=demo,
        suite=suite,
        flash_process=flash_process,
        flash_database_urls=flash_database_urls,
        user_tls=user_tls,
        clock=clock,
    )


def partners(agreements: Sequence[terms.Agreement], party: str, among: Sequence[str]) -> list[str]:
    """The parties of ``among`` with which ``party`` has a bilateral agreement: its node's peers."""
    bilateral = terms.bilaterals(agreements, party)
    return [p for p in among if p in bilateral]


def _peer_entry(
    root: Path, party: str, other: str, ports: dict[str, tuple[int, int]], flash_ports: dict[str, tuple[int, int]]
) -> PeerEntry:
    """``other`` as a peer of ``party``'s node: its public key and certificate copied over."""
    keys = root / party / "keys"
    (keys / f"{other}.pub").write_bytes((root / other / "keys" / f"{other}.pub").read_bytes())
    (keys / f"{other}.crt").write_bytes((root / other / "keys" / f"{other}.crt").read_bytes())
    flash_url = f"https://127.0.0.1:{flash_ports[other][1]}" if other in flash_ports else None
    return PeerEntry(other, f"https://127.0.0.1:{ports[other][1]}", f"keys/{other}.pub", f"keys/{other}.crt", flash_url)


def provision(
    root: Path,
    agreement_files: Sequence[Path],
    parties: Sequence[str],
    database_urls: dict[str, str] | None = None,
    demo: bool = False,
    suite: str = "classic",
    flash_process: bool = False,
    flash_database_urls: dict[str, str] | None = None,
    user_tls: bool = False,
    clock: Clock | None = None,
) -> dict[str, Provisioned]:
    """Create ``root/<PARTY>/`` for each party and return how to reach each; ``clock`` (the
    system's unless given) dates their certificates, node.toml files and users.

    Each node is given the agreements of ``agreement_files`` it is party to, and a peer for
    every party it has a bilateral agreement with.

    With ``flash_process`` each node runs its flash lane in a process of its own (R17);
    ``flash_database_urls`` give a party's flash lane a PostgreSQL database of its own.
    The nodes listen on loopback only. With ``user_tls`` their user APIs serve HTTPS with the
    node's certificate (``Provisioned.trust``), as every node does unless told otherwise;
    without it they are written ``user_tls = false`` and serve plain HTTP, which a node
    permits on loopback alone and says so in its log: the test and benchmark rigs' clients."""
    loaded = [(path.resolve(), terms.load(path)) for path in agreement_files]
    ports = {p: (free_port(), free_port()) for p in parties}
    flash_ports = {p: (free_port(), free_port()) for p in parties} if flash_process else {}
    clock = clock or SystemClock()
    now = clock.now().astimezone()
    for party in parties:
        home = private_dir(root / party)  # the node's database, log, keys and tokens: its operator's alone
        write_keys(home / "keys", party, suite, ("127.0.0.1", "localhost"), now)
    result: dict[str, Provisioned] = {}
    for party in parties:
        home = root / party
        own = [(path, a) for path, a in loaded if party in a.parties]
        others = partners([a for _, a in own], party, parties)
        peers = [_peer_entry(root, party, other, ports, flash_ports) for other in others]
        url = (database_urls or {}).get(party) or "sqlite:///node.db"
        user_port, peer_port = ports[party]
        text = render_config(
            party,
            [path for path, _ in own],
            url,
            ("127.0.0.1", user_port),
            ("127.0.0.1", peer_port),
            now,
            peers,
            user_tls=user_tls,
            demo=demo,
            flash_database_url=(flash_database_urls or {}).get(party),
            flash_listen=("127.0.0.1", flash_ports[party][0]) if flash_process else None,
            flash_peer_listen=("127.0.0.1", flash_ports[party][1]) if flash_process else None,
        )
        write_config(home / "node.toml", text)
        cfg = node_config.load(home / "node.toml")
        node = Node(cfg, open_node_database(cfg), clock)
        tokens = {}
        for user_id, role, clearance, ntk in DEMO_USERS[party]:
            tokens[ROLE_KEYS[role]] = node.add_user(user_id, role, clearance, ntk)
        node.dispose()
        with atomic_output(home / "tokens.json", mode=0o600) as f:
            f.write(json.dumps(tokens, indent=2).encode())
        scheme = "https" if user_tls else "http"
        result[party] = Provisioned(
            party,
            home,
            home / "node.toml",
            f"{scheme}://127.0.0.1:{user_port}",
            tokens,
            f"{scheme}://127.0.0.1:{flash_ports[party][0]}" if flash_process else None,
        )
    return result
