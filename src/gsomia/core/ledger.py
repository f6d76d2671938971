"""The tamper-evident ledger: an RFC 9162 Merkle log over stored subtree hashes.

Pure: the log's hashes live wherever the caller keeps them; every function here
takes a ``get(level, index)`` that returns the hash of the *complete* subtree of
``2**level`` leaves starting at leaf ``index * 2**level``. Appending leaf ``n``
creates one node per trailing 1-bit of ``n`` (about two per leaf on average), and
any root, inclusion proof or consistency proof needs O(log n) stored hashes.

Because the nodes a computation reads do not depend on the hash values, a caller
can first ``plan`` a computation (collect the keys it will read), fetch them all in
one query, then run it: one round trip to the database per proof.

Signed tree heads (``TreeHead``, signed by the node key: Ed25519, and ML-DSA-65 too
in the pq-hybrid suite, ``PrivateKeys.sign``) are what nodes exchange: anyone holding the node's
public key can check a head, an inclusion proof against it, and that a later head
extends an earlier one (RFC 9162 sections 2.1.3 and 2.1.4), with the checks of
``core.merkle``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gsomia.core.canonical import b64, canonical, unb64
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.core.merkle import EMPTY_ROOT, node_hash, split

# The proofs built here are checked by ``merkle.verify_inclusion`` and ``merkle.verify_consistency``;
# named here as well for the node's witness, which reads them from the ledger.

Get = Callable[[int, int], bytes]
NodeKey = tuple[int, int]
_HEAD = b"gsomia/ledger/v1/tree-head\x00"
_CONTEXT = b"gsomia/ledger/v1"


def append_nodes(size: int, leaf: bytes, get: Get) -> list[tuple[int, int, bytes]]:
    """The nodes to store when leaf hash ``leaf`` becomes leaf number ``size``."""
    nodes = [(0, size, leaf)]
    level, index, current = 0, size, leaf
    while index & 1:
        current = node_hash(get(level, index - 1), current)
        level, index = level + 1, index >> 1
        nodes.append((level, index, current))
    return nodes


def append_many(size: int, leaves: Sequence[bytes], get: Get) -> list[tuple[int, int, bytes]]:
    """``append_nodes`` for a batch, reading new nodes from the batch itself."""
    fresh: dict[NodeKey, bytes] = {}
    out: list[tuple[int, int, bytes]] = []
    for offset, leaf in enumerate(leaves):  # append_nodes, inlined: this is the hot loop of every append
        level, index, current = 0, size + offset, leaf
        fresh[(0, index)] = leaf
        out.append((0, index, leaf))
        while index & 1:
            left = fresh.get((level, index - 1))
            current = node_hash(left if left is not None else get(level, index - 1), current)
            level, index = level + 1, index >> 1
            fresh[(level, index)] = current
            out.append((level, index, current))
    return out


def subtree_hash(lo: int, hi: int, get: Get) -> bytes:
    """MTH(D[lo:hi]) for a range that starts on a boundary of its own split (as in RFC 9162)."""
    n = hi - lo
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and lo % n == 0:
        return get(n.bit_length() - 1, lo // n)
    k = split(n)
    return node_hash(subtree_hash(lo, lo + k, get), subtree_hash(lo + k, hi, get))


def root(size: int, get: Get) -> bytes:
    return subtree_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: Get) -> list[bytes]:
    """PATH(index, D[0:size]), leaf side first (RFC 9162 section 2.1.3.1)."""
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, get))
            lo += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, get: Get) -> list[bytes]:
    """PROOF(old, D[0:new]) (RFC 9162 section 2.1.4.1)."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == 0 or old == new:
        return []
    return _subproof(old, 0, new, True, get)


def _subproof(m: int, lo: int, hi: int, complete: bool, get: Get) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [subtree_hash(lo, hi, get)]
    k = split(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, complete, get), subtree_hash(lo + k, hi, get)]
    return [*_subproof(m - k, lo + k, hi, False, get), subtree_hash(lo, lo + k, get)]


def plan(compute: Callable[[Get], object]) -> set[NodeKey]:
    """The stored nodes ``compute`` will read: run it once against placeholder hashes."""
    keys: set[NodeKey] = set()

    def record(level: int, index: int) -> bytes:
        keys.add((level, index))
        return b"\x00" * 32

    compute(record)
    return keys


# --- entries and signed tree heads --------------------------------------------------


def entry_bytes(entry: dict[str, object]) -> bytes:
    """The canonical bytes of a ledger entry: what its leaf hash covers.

    A value of an entry's ``detail`` that JSON has no type for is written as its
    ``str()``, as the ledger has always written it: stored entries must hash the same."""
    return canonical(entry, default=str)


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A node's signed statement: its log had ``size`` entries with this ``root`` at ``at``."""

    party: str
    size: int
    root: bytes
    at: datetime
    signature: bytes = b""

    def message(self) -> bytes:
        stamp = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return _HEAD + f"{self.party}\x00{self.size}\x00{stamp}\x00".encode() + self.root

    def as_dict(self) -> dict[str, object]:
        return {
            "party": self.party,
            "size": self.size,
            "root": self.root.hex(),
            "at": self.at.astimezone(UTC).isoformat(),
            "signature": b64(self.signature),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TreeHead:
        try:
            at = datetime.fromisoformat(str(data["at"]))
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or at.tzinfo is None:
                raise ValueError
            return cls(
                party=str(data["party"]),
                size=size,
                root=bytes.fromhex(str(data["root"])),
                at=at,
                signature=unb64(str(data["signature"])),
            )
        except (KeyError, ValueError, TypeError):
            raise ValueError("not a signed tree head") from None


def sign_head(key: PrivateKeys, party: str, size: int, head_root: bytes, at: datetime) -> TreeHead:
    unsigned = TreeHead(party, size, head_root, at)
    return TreeHead(party, size, head_root, at, key.sign(unsigned.message(), _CONTEXT))


def verify_head(key: PublicKeys, head: TreeHead) -> bool:
    """Signed by ``key`` (Ed25519, and ML-DSA-65 too for a pq-hybrid key)."""
    return key.verify(head.signature, head.message(), _CONTEXT)
