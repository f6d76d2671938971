"""Known-answer vectors (``tests/vectors``): they pin envelope format v1 and label encoding v1.

The envelopes were sealed once by ``tests/vectors/make_vectors.py`` and checked in. If the
wire format changes (framing, canonical JSON, AAD, key wrap, signature input, Merkle
leaf), they stop opening here: bump the format version and write new vectors instead.
"""

from __future__ import annotations

import json
import random
import struct
import tomllib
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.agreement import Agreement, parse
from gsomia.core.envelope import EnvelopeError, Opener, Tampered, UnsupportedVersion
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.core.label import Label, LabelInvalid

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).resolve().parent / "vectors"
SUITES = ("classic", "pq-hybrid")


@cache
def vector(suite: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"envelope-v1-{suite}.json").read_text("utf-8"))


def agreement_of(v: dict[str, Any]) -> Agreement:
    data = tomllib.loads((ROOT / v["agreement"]["file"]).read_text("utf-8"))
    data["protection"]["suite"] = v["agreement"]["suite"]
    return parse(data, v["agreement"]["file"])


def private_key(v: dict[str, Any], party: str) -> PrivateKeys:
    return PrivateKeys.from_bytes(json.dumps(v["keys"][party]["private"]).encode())


def public_key(v: dict[str, Any], party: str) -> PublicKeys:
    return PublicKeys.from_bytes(json.dumps(v["keys"][party]["public"]).encode())


def opener_for(v: dict[str, Any]) -> Opener:
    return Opener(private_key(v, "JPN"), [public_key(v, "KOR")], agreement_of(v))


@pytest.mark.parametrize("suite", SUITES)
def test_stored_keys_are_consistent(suite: str) -> None:
    v = vector(suite)
    for party in ("KOR", "JPN"):
        private, public = private_key(v, party), public_key(v, party)
        assert (private.party, private.suite) == (party, suite)
        assert private.public().to_bytes() == public.to_bytes()
        assert public.kid == v["keys"][party]["kid"]


@pytest.mark.parametrize("suite", SUITES)
def test_stored_envelope_opens_to_exactly_the_stored_label_and_payload(suite: str) -> None:
    v = vector(suite)
    env = bytes.fromhex(v["envelope_hex"])
    label, payload = opener_for(v).open(env)
    assert label.to_bytes() == bytes.fromhex(v["label_canonical_hex"])
    assert label.as_dict() == v["label"]
    assert payload == bytes.fromhex(v["payload_hex"])
    # The other recipient opens it too; the originator's key was wrapped for itself.
    other = Opener(private_key(v, "KOR"), [public_key(v, "KOR")], agreement_of(v))
    assert other.open(env) == (label, payload)


def keyblock(v: dict[str, Any], env: bytes) -> tuple[int, int]:
    """(start, end) of the key block: it follows magic, version, header and label."""
    at = 5 + 4 + len(v["header_canonical"].encode()) + 4 + len(bytes.fromhex(v["label_canonical_hex"]))
    (n,) = struct.unpack(">I", env[at : at + 4])
    return at + 4, at + 4 + n


@pytest.mark.parametrize("suite", SUITES)
def test_stored_envelope_layout(suite: str) -> None:
    """Magic, version and the first three length-prefixed blocks, byte for byte."""
    v = vector(suite)
    env = bytes.fromhex(v["envelope_hex"])
    assert env[:5] == b"GSOM\x01"
    header = v["header_canonical"].encode()
    label = bytes.fromhex(v["label_canonical_hex"])
    assert env[5:].startswith(struct.pack(">I", len(header)) + header + struct.pack(">I", len(label)) + label)
    assert json.loads(header)["signer"] == v["keys"]["KOR"]["kid"]
    start, end = keyblock(v, env)
    entries = json.loads(env[start:end])
    assert [e["party"] for e in entries] == [p for _, p in sorted((v["keys"][p]["kid"], p) for p in v["recipients"])]


@pytest.mark.parametrize("suite", SUITES)
def test_stored_batch_envelopes_open_each_on_its_own(suite: str) -> None:
    v = vector(suite)
    assert len(v["batch"]) == 3
    for item in v["batch"]:
        label, payload = opener_for(v).open(bytes.fromhex(item["envelope_hex"]))
        assert label.to_bytes() == bytes.fromhex(item["label_canonical_hex"])
        assert payload == bytes.fromhex(item["payload_hex"])


def positions(n: int, suite: str) -> range | list[int]:
    """Every offset of the classic vector; of the larger hybrid one, every third plus 300 random."""
    if suite == "classic":
        return range(n)
    return sorted(set(range(0, n, 3)) | set(random.Random(n).sample(range(n), 300)))


@pytest.mark.parametrize("suite", SUITES)
def test_a_one_byte_change_in_the_stored_envelope_is_refused(suite: str) -> None:
    v = vector(suite)
    env = bytes.fromhex(v["envelope_hex"])
    op = opener_for(v)
    body = keyblock(v, env)[1]  # segments, then the trailer
    for i in positions(len(env), suite):
        changed = env[:i] + bytes([env[i] ^ 0x01]) + env[i + 1 :]
        with pytest.raises((EnvelopeError, LabelInvalid)) as caught:
            op.open(changed)
        if i < 5:
            assert caught.type is UnsupportedVersion
        elif i >= body:
            assert caught.type is Tampered
    assert op.open(env)[1] == bytes.fromhex(v["payload_hex"])


@pytest.mark.parametrize("suite", SUITES)
def test_stored_envelope_is_refused_under_the_other_suite(suite: str) -> None:
    other = vector("classic" if suite == "pq-hybrid" else "pq-hybrid")
    with pytest.raises(UnsupportedVersion):
        opener_for(other).open(bytes.fromhex(vector(suite)["envelope_hex"]))


# --- labels -----------------------------------------------------------------------------------------


@cache
def label_cases() -> list[dict[str, Any]]:
    data = json.loads((VECTORS / "label-v1.json").read_text("utf-8"))
    assert data["version"] == 1
    return data["cases"]


def case_ids() -> list[str]:
    return [c["name"] for c in label_cases()]


@pytest.mark.parametrize("case", label_cases(), ids=case_ids())
def test_label_vector_encodes_byte_for_byte(case: dict[str, Any]) -> None:
    expected = bytes.fromhex(case["canonical_hex"])
    assert case["canonical_text"].encode("utf-8") == expected
    label = Label.from_dict(case["fields"])
    assert label.to_bytes() == expected
    assert Label.from_bytes(expected) == label
    assert Label.from_bytes(expected).to_bytes() == expected


@pytest.mark.parametrize("case", label_cases(), ids=case_ids())
def test_other_spellings_of_a_label_vector_are_refused(case: dict[str, Any]) -> None:
    expected = bytes.fromhex(case["canonical_hex"])
    spellings = {
        json.dumps(json.loads(expected), sort_keys=True).encode(),  # whitespace
        json.dumps(json.loads(expected), sort_keys=True, separators=(",", ":")).encode(),  # \u escapes
        json.dumps(case["fields"], ensure_ascii=False, separators=(",", ":")).encode(),  # as given
    } - {expected}
    assert spellings
    for raw in spellings:
        with pytest.raises(LabelInvalid, match="canonical"):
            Label.from_bytes(raw)


def test_label_vectors_cover_hangul_kanji_and_decomposed_input() -> None:
    texts = [c["canonical_text"] for c in label_cases()]
    assert any("군사II급비밀" in t for t in texts)
    assert any("極秘" in t and "特定秘密保護" in t for t in texts)
    # The decomposed case must stay decomposed in the file, or it tests nothing.
    given = [c["fields"]["classification"] for c in label_cases()]
    assert any(g != unicodedata.normalize("NFC", g) for g in given)
    assert all(t == unicodedata.normalize("NFC", t) for t in texts)
