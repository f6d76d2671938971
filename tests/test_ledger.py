"""The ledger's Merkle log: stored-hash proofs agree with a direct computation, and fail when altered."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import keys, ledger, merkle


def build(n: int) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    leaves = [merkle.leaf_hash(os.urandom(8)) for _ in range(n)]
    store: dict[tuple[int, int], bytes] = {}
    for node in ledger.append_many(0, leaves, lambda lv, i: store[(lv, i)]):
        store[(node[0], node[1])] = node[2]
    return leaves, store


def test_roots_and_paths_match_the_direct_computation_for_every_size() -> None:
    leaves, store = build(70)

    def get(level: int, index: int) -> bytes:
        return store[(level, index)]

    for n in range(1, 71):
        assert ledger.root(n, get) == merkle.root(leaves[:n])
        for i in range(n):
            proof = ledger.inclusion_proof(i, n, get)
            assert proof == merkle.inclusion_path(leaves[:n], i)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, merkle.root(leaves[:n]))


def test_appending_one_at_a_time_equals_appending_a_batch() -> None:
    leaves, batch = build(37)
    single: dict[tuple[int, int], bytes] = {}
    for i, leaf in enumerate(leaves):
        for level, index, h in ledger.append_nodes(i, leaf, lambda lv, ix: single[(lv, ix)]):
            single[(level, index)] = h
    assert single == batch
    assert len(batch) < 2 * len(leaves)  # about two stored nodes per entry


def test_every_consistency_proof_verifies_and_none_across_a_fork() -> None:
    leaves, store = build(40)

    def get(level: int, index: int) -> bytes:
        return store[(level, index)]

    forked_leaves = list(leaves)
    forked_leaves[5] = merkle.leaf_hash(b"rewritten")
    for new in range(1, 41):
        for old in range(0, new + 1):
            proof = ledger.consistency_proof(old, new, get)
            old_root, new_root = ledger.root(old, get), ledger.root(new, get)
            assert merkle.verify_consistency(old, new, old_root, new_root, proof), (old, new)
            if 5 < old < new:  # a rewritten history does not extend the signed one
                assert not merkle.verify_consistency(old, new, merkle.root(forked_leaves[:old]), new_root, proof)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_any_altered_hash_fails(size: int, data: st.DataObject) -> None:
    leaves, store = build(size)

    def get(level: int, index: int) -> bytes:
        return store[(level, index)]

    index = data.draw(st.integers(0, size - 1))
    head = ledger.root(size, get)
    proof = ledger.inclusion_proof(index, size, get)
    assert merkle.verify_inclusion(leaves[index], index, size, proof, head)
    assert not merkle.verify_inclusion(merkle.leaf_hash(b"other"), index, size, proof, head)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes(32)
        assert not merkle.verify_inclusion(leaves[index], index, size, bad, head)
    if size > 1:
        assert (
            not merkle.verify_inclusion(leaves[index], (index + 1) % size, size, proof, head)
            or leaves[index] == leaves[(index + 1) % size]
        )
    old = data.draw(st.integers(1, size))
    cproof = ledger.consistency_proof(old, size, get)
    assert merkle.verify_consistency(old, size, ledger.root(old, get), head, cproof)
    if cproof:
        k = data.draw(st.integers(0, len(cproof) - 1))
        bad = list(cproof)
        bad[k] = bytes(32)
        assert not merkle.verify_consistency(old, size, ledger.root(old, get), head, bad)


def test_a_proof_reads_only_logarithmically_many_stored_nodes() -> None:
    size = 1_000_003
    assert len(ledger.plan(lambda get: ledger.inclusion_proof(123_456, size, get))) <= 2 * size.bit_length()
    assert len(ledger.plan(lambda get: ledger.consistency_proof(999_999, size, get))) <= 2 * size.bit_length()
    assert len(ledger.plan(lambda get: ledger.root(size, get))) <= size.bit_length()


@pytest.mark.parametrize("suite", ["classic", "pq-hybrid"])
def test_signed_tree_heads(suite: str) -> None:
    key = keys.generate("KOR", suite)  # type: ignore[arg-type]
    head = ledger.sign_head(key, "KOR", 42, bytes(range(32)), datetime(2019, 11, 22, 9, tzinfo=UTC))
    assert len(head.signature) == (64 if suite == "classic" else 64 + 3309)  # Ed25519 (‖ ML-DSA-65)
    assert ledger.verify_head(key.public(), head)
    again = ledger.TreeHead.from_dict(head.as_dict())
    assert again == head
    assert ledger.verify_head(key.public(), again)
    forgeries = [
        ledger.TreeHead("KOR", 43, head.root, head.at, head.signature),
        ledger.TreeHead("JPN", 42, head.root, head.at, head.signature),
        ledger.TreeHead("KOR", 42, bytes(32), head.at, head.signature),
        ledger.TreeHead("KOR", 42, head.root, head.at, head.signature[:-1] + bytes([head.signature[-1] ^ 1])),
    ]
    if suite == "pq-hybrid":  # the Ed25519 half alone is not enough
        forgeries.append(ledger.TreeHead("KOR", 42, head.root, head.at, head.signature[:64]))
    for forged in forgeries:
        assert not ledger.verify_head(key.public(), forged)
    assert not ledger.verify_head(keys.generate("KOR", suite).public(), head)  # type: ignore[arg-type]
