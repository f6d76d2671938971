"""RFC 9162 Merkle tree hashing and proof checking: the one copy in gsomia.

Leaf and node hashes, the tree's split, roots and audit paths of a list of leaves,
and the checks of inclusion and consistency proofs. Shared by the envelope (one
signature over the root of a batch of envelopes, each carrying its inclusion proof),
the ledger (``core.ledger`` builds proofs over stored subtree hashes), the audit tools
and the witness, so that what one part proves every other part checks the same way.
SHA-256 with the 0x00 leaf and 0x01 node prefixes, so a leaf can never pass for a
node (second-preimage safe). Proof checks follow RFC 9162 sections 2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): the size of the left
    subtree of a tree of n leaves (RFC 9162 section 2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of a list of leaf hashes (already ``leaf_hash``-ed)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up pairing gives the RFC 9162 shape: an odd node is promoted unchanged.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path for leaf ``index`` (RFC 9162 PATH(m, D[n]))."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # Walk down from the root collecting siblings, then reverse (leaf first).
    while hi - lo > 1:
        k = split(hi - lo)
        if index - lo < k:
            path.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """Recompute the root from a leaf hash and its audit path; None if the path is malformed.

    RFC 9162 section 2.1.3.2, with public data only."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    sha256 = hashlib.sha256  # node_hash inlined: opening a batch of envelopes checks one path each
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r).digest()  # node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p).digest()  # node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """Leaf hash ``leaf`` is entry ``index`` of the tree of ``size`` leaves whose root is ``expected_root``."""
    return root_from_path(leaf, index, size, proof) == expected_root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: the tree of ``new`` leaves extends the tree of ``old``."""
    if old > new or old < 0:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def inclusion_paths(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every leaf's audit path at once, in O(n log n): for signing a batch."""
    return root_and_paths(leaves)[1]


def root_and_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """``root(leaves)`` and ``inclusion_paths(leaves)`` from one pass over the tree."""
    paths: list[list[bytes]] = [[] for _ in leaves]

    def walk(lo: int, hi: int) -> bytes:
        # The RFC 9162 split: left subtree the largest power of two below the size.
        if hi - lo == 1:
            return leaves[lo]
        k = split(hi - lo)
        left, right = walk(lo, lo + k), walk(lo + k, hi)
        for i in range(lo, lo + k):
            paths[i].append(right)  # deeper siblings first: each path runs leaf to root
        for i in range(lo + k, hi):
            paths[i].append(left)
        return node_hash(left, right)

    if not leaves:
        return EMPTY_ROOT, []
    return walk(0, len(leaves)), paths
