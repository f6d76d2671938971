"""Sealed envelopes (format v1): round trips, batches, caches, refusals, tampering, fuzz.

Every hostile input must end in one of the envelope's specific errors
(``UnsupportedVersion``, ``LabelInvalid``, ``UnknownSigner``, ``NotARecipient``,
``Tampered``) and never in plaintext. The byte layout is parsed here independently
of ``gsomia.core.envelope`` (``regions``), so a flip can be aimed at each region and the
expected error stated where it is determinate.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import struct
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.core import envelope, keys
from gsomia.core.agreement import Agreement, load, parse
from gsomia.core.envelope import (
    EnvelopeError,
    NotARecipient,
    Opener,
    Sealer,
    Tampered,
    UnknownSigner,
    UnsupportedVersion,
)
from gsomia.core.keys import PrivateKeys
from gsomia.core.label import Label, LabelInvalid

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT_FILE = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
SUITES = ("classic", "pq-hybrid")
CREATED = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
SPECIFIC = (EnvelopeError, LabelInvalid)  # every refusal is one of these (LabelInvalid is not an EnvelopeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- fixtures (cached per suite so hypothesis tests can share them) -------------------------


def agreement_data(suite: str = "classic") -> dict[str, Any]:
    data = tomllib.loads(AGREEMENT_FILE.read_text("utf-8"))
    data["protection"]["suite"] = suite
    return data


@functools.cache
def agreement(suite: str) -> Agreement:
    if suite == "classic":
        return load(AGREEMENT_FILE)
    return parse(agreement_data(suite), "pq-hybrid variant")


@dataclass(frozen=True)
class Party:
    kor: PrivateKeys  # the originator
    jpn: PrivateKeys  # the recipient
    jpn_other: PrivateKeys  # another JPN key, not a recipient
    kor_other: PrivateKeys  # another KOR key, not trusted
    usa: PrivateKeys  # not a party to the agreement


@functools.cache
def party_keys(suite: str) -> Party:
    return Party(*(keys.generate(p, suite) for p in ("KOR", "JPN", "JPN", "KOR", "USA")))


def make_label(suite: str = "classic", **changes: Any) -> Label:
    fields: dict[str, Any] = {
        "item_id": "0f6b5a52-8a3e-4f5e-9d61-2b1f3f1c9a10",
        "agreement": agreement(suite).id,
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ("JPN",),
        "created_at": CREATED,
        "purposes": ("북한 미사일 분석",),
    }
    fields.update(changes)
    return Label(**fields)


def sealer(suite: str, **kwargs: Any) -> Sealer:
    return Sealer(party_keys(suite).kor, agreement(suite), **kwargs)


def opener(suite: str, recipient: PrivateKeys | None = None, trusted: list[keys.PublicKeys] | None = None) -> Opener:
    k = party_keys(suite)
    return Opener(recipient or k.jpn, trusted if trusted is not None else [k.kor.public()], agreement(suite))


def seal(suite: str, payload: bytes, segment_size: int = 64, **label_changes: Any) -> bytes:
    k = party_keys(suite)
    return sealer(suite).seal(
        payload, make_label(suite, **label_changes), [k.jpn.public(), k.kor.public()], segment_size
    )


@functools.cache
def sample(suite: str) -> tuple[bytes, bytes]:
    """(envelope, payload): four segments of 64 bytes, the last one partial."""
    payload = bytes(range(200))
    return seal(suite, payload), payload


@functools.cache
def shared_opener(suite: str) -> Opener:
    return opener(suite)


def attempt(op: Opener, data: bytes) -> tuple[Label, bytes] | EnvelopeError | LabelInvalid:
    """Open, returning the specific error instead of raising it; any other exception escapes."""
    try:
        return op.open(data)
    except SPECIFIC as exc:
        return exc


def refused(op: Opener, data: bytes) -> type[Exception]:
    outcome = attempt(op, data)
    assert isinstance(outcome, SPECIFIC), "a modified envelope opened"
    return type(outcome)


# --- an independent reading of the v1 layout --------------------------------------------------


def regions(env: bytes) -> list[tuple[str, int, int]]:
    """(name, start, end) of every region, in order; asserts they tile the envelope."""
    out = [("magic", 0, 4), ("version", 4, 5)]
    pos = 5
    for name in ("header", "label", "keyblock"):
        (n,) = struct.unpack(">I", env[pos : pos + 4])
        out += [(f"{name}-length", pos, pos + 4), (name, pos + 4, pos + 4 + n)]
        pos += 4 + n
    i = 0
    while True:
        flag, n = struct.unpack(">BI", env[pos : pos + 5])
        out += [
            (f"segment{i}-flag", pos, pos + 1),
            (f"segment{i}-length", pos + 1, pos + 5),
            (f"segment{i}-body", pos + 5, pos + 5 + n - 16),
            (f"segment{i}-tag", pos + 5 + n - 16, pos + 5 + n),
        ]
        pos += 5 + n
        i += 1
        if flag == 1:
            break
        assert flag == 0
    (n,) = struct.unpack(">I", env[pos : pos + 4])
    out += [("trailer-length", pos, pos + 4), ("trailer", pos + 4, pos + 4 + n)]
    assert pos + 4 + n == len(env)
    return out


def region(env: bytes, name: str) -> bytes:
    (start, end) = next((s, e) for n, s, e in regions(env) if n == name)
    return env[start:end]


def segments(env: bytes) -> list[bytes]:
    """Each segment's full framing (flag, length, ciphertext and tag)."""
    rs = {n: (s, e) for n, s, e in regions(env)}
    return [
        env[rs[f"segment{i}-flag"][0] : rs[f"segment{i}-tag"][1]] for i in range(len(rs)) if f"segment{i}-flag" in rs
    ]


def split(env: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(everything before the first segment, the segments, the framed trailer)."""
    rs = {n: (s, e) for n, s, e in regions(env)}
    start = rs["segment0-flag"][0]
    end = rs["trailer-length"][0]
    return env[:start], segments(env), env[end:]


def framed(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def with_block(env: bytes, name: str, raw: bytes) -> bytes:
    """Replace one length-prefixed block (header, label, keyblock, trailer) with ``raw``, re-framed."""
    rs = {n: (s, e) for n, s, e in regions(env)}
    return env[: rs[f"{name}-length"][0]] + framed(raw) + env[rs[name][1] :]


def flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    ("size", "segment_size", "count"),
    [
        (0, 64, 1),  # empty: one final segment holding only a tag
        (1, 64, 1),
        (64, 64, 1),  # exactly one full segment, marked final
        (65, 64, 2),
        (128, 64, 2),
        (200, 64, 4),  # several, the last partial
        (1000, 64, 16),
        (999, 1, 999),
        (5, envelope.DEFAULT_SEGMENT, 1),
    ],
)
def test_round_trip(suite: str, size: int, segment_size: int, count: int) -> None:
    payload = random.Random(size).randbytes(size)
    env = seal(suite, payload, segment_size)
    label, opened = opener(suite).open(env)
    assert opened == payload
    assert label == make_label(suite)
    assert label.to_bytes() == region(env, "label")
    segs = segments(env)
    assert len(segs) == count
    # Every segment but the last is full and marked "more"; the last is marked "final".
    assert [s[0] for s in segs] == [0] * (count - 1) + [1]
    assert all(len(s) == 5 + segment_size + 16 for s in segs[:-1])
    assert len(segs[-1]) == 5 + (size - segment_size * (count - 1)) + 16


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_of_exactly_one_default_segment(suite: str) -> None:
    payload = random.Random(1).randbytes(envelope.DEFAULT_SEGMENT)
    k = party_keys(suite)
    env = envelope.seal(payload, make_label(suite), k.kor, [k.jpn.public()], agreement(suite))
    assert len(segments(env)) == 1
    assert envelope.open(env, k.jpn, [k.kor.public()], agreement(suite)) == (make_label(suite), payload)


class Trickle(io.RawIOBase):
    """A pipe-like source or sink: at most ``step`` bytes per call."""

    def __init__(self, data: bytes = b"", step: int = 7) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(self.step, len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("suite", SUITES)
def test_streams_with_short_reads_still_make_full_segments(suite: str) -> None:
    payload = random.Random(2).randbytes(300)
    k = party_keys(suite)
    sink = io.BytesIO()
    written = envelope.seal_stream(
        Trickle(payload), sink, make_label(suite), k.kor, [k.jpn.public()], agreement(suite), segment_size=100
    )
    assert written == 300
    env = sink.getvalue()
    assert [len(s) for s in segments(env)] == [5 + 100 + 16] * 3
    out = io.BytesIO()
    opened = envelope.open_stream(Trickle(env, 5), out, k.jpn, [k.kor.public()], agreement(suite))
    assert out.getvalue() == payload
    assert (opened.label, opened.size, opened.signer.kid) == (make_label(suite), 300, k.kor.public().kid)


@pytest.mark.parametrize("suite", SUITES)
def test_every_listed_recipient_opens_and_the_originator_too(suite: str) -> None:
    env, payload = sample(suite)
    k = party_keys(suite)
    assert opener(suite, k.jpn).open(env)[1] == payload
    assert opener(suite, k.kor).open(env)[1] == payload


@pytest.mark.parametrize("suite", SUITES)
def test_two_seals_of_one_payload_differ_in_every_segment(suite: str) -> None:
    a, b = seal(suite, b"x" * 100), seal(suite, b"x" * 100)
    assert region(a, "label") == region(b, "label")
    assert all(sa[5:] != sb[5:] for sa, sb in zip(segments(a), segments(b), strict=True))


@pytest.mark.parametrize("suite", SUITES)
def test_sealer_reuses_an_epoch_key_until_its_limit(suite: str) -> None:
    k = party_keys(suite)
    s = sealer(suite, epoch_limit=2)

    def epoch_of(env: bytes) -> str:
        entries = json.loads(region(env, "keyblock"))
        return next(e["epoch"] for e in entries if e["party"] == "JPN")

    envs = [s.seal(bytes([i]) * 10, make_label(suite), [k.jpn.public()]) for i in range(3)]
    epochs = [epoch_of(e) for e in envs]
    assert epochs[0] == epochs[1] != epochs[2]
    s.rotate()
    fourth = s.seal(b"", make_label(suite), [k.jpn.public()])
    assert epoch_of(fourth) not in epochs
    for i, env in enumerate([*envs, fourth]):
        assert opener(suite).open(env)[1] == (bytes([i]) * 10 if i < 3 else b"")


# --- batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9])
def test_seal_batch_each_envelope_opens_on_its_own(suite: str, size: int) -> None:
    k = party_keys(suite)
    marks = ["군사II급비밀", "군사III급비밀"]
    items = [
        (
            bytes([i]) * (i * 37),
            make_label(suite, item_id=f"00000000-0000-4000-8000-{i:012d}", classification=marks[i % 2]),
        )
        for i in range(size)
    ]
    envs = sealer(suite).seal_batch(items, [k.jpn.public()], segment_size=64)
    assert len(envs) == size
    trailers = [json.loads(region(e, "trailer")) for e in envs]
    assert len({t["ed25519"] for t in trailers}) == 1  # one signature for the whole batch
    for i, (env, (payload, label)) in enumerate(zip(envs, items, strict=True)):
        assert trailers[i]["batch"]["size"] == size
        assert trailers[i]["batch"]["index"] == i
        assert opener(suite).open(env) == (label, payload)  # a fresh Opener: nothing cached


def test_seal_batch_of_nothing_is_nothing() -> None:
    assert sealer("classic").seal_batch([], [party_keys("classic").jpn.public()]) == []


@pytest.mark.parametrize("suite", SUITES)
def test_batch_trailers_do_not_transfer_between_envelopes(suite: str) -> None:
    k = party_keys(suite)
    items = [(b"a" * 10, make_label(suite)), (b"b" * 10, make_label(suite, classification="군사III급비밀"))]
    a, b = sealer(suite).seal_batch(items, [k.jpn.public()])
    op = opener(suite)
    op.open(a)  # the root is now cached
    head_b, segs_b, _ = split(b)
    _, _, trailer_a = split(a)
    assert refused(op, head_b + b"".join(segs_b) + trailer_a) is Tampered


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    ("size", "index", "claimed"),
    [(3, 2, (1, 2)), (3, 2, (4, 5)), (4, 0, (0, 3)), (4, 3, (5, 6)), (2, 1, (2, 3))],
)
def test_batch_position_and_size_cannot_be_restated(
    suite: str, size: int, index: int, claimed: tuple[int, int]
) -> None:
    """The same audit path fits other (index, size) pairs (RFC 9162); the signed size rules them out."""
    k = party_keys(suite)
    items = [(bytes([i]), make_label(suite, item_id=f"00000000-0000-4000-8000-{i:012d}")) for i in range(size)]
    env = sealer(suite).seal_batch(items, [k.jpn.public()])[index]
    op = opener(suite)
    assert op.open(env)[1] == bytes([index])  # verified and cached

    def restate(trailer: dict[str, Any]) -> None:
        trailer["batch"]["index"], trailer["batch"]["size"] = claimed

    assert refused(op, with_trailer_field(env, restate)) is Tampered


# --- the Opener's caches never skip a check -----------------------------------------------------


def with_trailer_field(env: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    trailer = json.loads(region(env, "trailer"))
    change(trailer)
    return with_block(env, "trailer", canonical(trailer))


def flip_signature(name: str) -> Callable[[dict[str, Any]], None]:
    def change(trailer: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(trailer[name]))
        raw[len(raw) // 2] ^= 0x01
        trailer[name] = base64.b64encode(raw).decode()

    return change


@pytest.mark.parametrize("suite", SUITES)
def test_cached_batch_root_does_not_hide_a_flipped_signature(suite: str) -> None:
    k = party_keys(suite)
    items = [(bytes([i]) * 20, make_label(suite, item_id=f"00000000-0000-4000-8000-{i:012d}")) for i in range(4)]
    envs = sealer(suite).seal_batch(items, [k.jpn.public()])
    op = opener(suite)
    assert op.open(envs[0]) == (items[0][1], items[0][0])  # verifies and caches the batch root
    names = ["ed25519", "mldsa65"] if suite == "pq-hybrid" else ["ed25519"]
    for name in names:  # in the hybrid suite each signature must verify on its own
        bad = with_trailer_field(envs[1], flip_signature(name))
        assert len(bad) == len(envs[1])
        assert refused(op, bad) is Tampered
    assert op.open(envs[1]) == (items[1][1], items[1][0])  # the failure poisoned nothing


@pytest.mark.parametrize("suite", SUITES)
def test_cached_epoch_key_does_not_hide_a_changed_wrapped_key(suite: str) -> None:
    env, payload = sample(suite)
    op = opener(suite)
    assert op.open(env)[1] == payload  # the epoch key is cached
    entries = json.loads(region(env, "keyblock"))
    kid = party_keys(suite).jpn.public().kid
    for entry in entries:
        if entry["kid"] == kid:
            raw = bytearray(base64.b64decode(entry["key"]))
            raw[-1] ^= 0x01
            entry["key"] = base64.b64encode(raw).decode()
    assert refused(op, with_block(env, "keyblock", canonical(entries))) is Tampered


# --- seal refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_seal_refuses_a_marking_outside_the_agreement(suite: str) -> None:
    k = party_keys(suite)
    sink = io.BytesIO()
    with pytest.raises(LabelInvalid, match=r"R3"):
        envelope.seal_stream(
            io.BytesIO(b"x"),
            sink,
            make_label(suite, classification="군사I급비밀"),
            k.kor,
            [k.jpn.public()],
            agreement(suite),
        )
    assert sink.getvalue() == b""  # refused before a byte was written


@pytest.mark.parametrize("suite", SUITES)
def test_seal_refuses_a_recipient_the_item_is_not_releasable_to(suite: str) -> None:
    k = party_keys(suite)
    with pytest.raises(EnvelopeError, match=r"not releasable to USA \(R5\)"):
        sealer(suite).seal(b"x", make_label(suite), [k.jpn.public(), k.usa.public()])


@pytest.mark.parametrize("suite", SUITES)
def test_seal_refuses_a_label_releasable_to_a_stranger(suite: str) -> None:
    k = party_keys(suite)
    with pytest.raises(LabelInvalid, match=r"USA, not a party"):
        sealer(suite).seal(b"x", make_label(suite, releasable_to=("JPN", "USA")), [k.jpn.public()])


@pytest.mark.parametrize(("suite", "other"), [("classic", "pq-hybrid"), ("pq-hybrid", "classic")])
def test_seal_refuses_keys_of_the_wrong_suite(suite: str, other: str) -> None:
    k, wrong = party_keys(suite), party_keys(other)
    with pytest.raises(EnvelopeError, match=rf"JPN's key is {other}"):
        sealer(suite).seal(b"x", make_label(suite), [wrong.jpn.public()])
    with pytest.raises(EnvelopeError, match=rf"originator key is {other}"):
        envelope.seal(b"x", make_label(suite), wrong.kor, [k.jpn.public()], agreement(suite))


@pytest.mark.parametrize("suite", SUITES)
def test_seal_refuses_an_originator_key_that_is_not_the_labels_originator(suite: str) -> None:
    k = party_keys(suite)
    with pytest.raises(EnvelopeError, match=r"JPN's but the label names KOR"):
        envelope.seal(b"x", make_label(suite), k.jpn, [k.jpn.public()], agreement(suite))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipients": []}, r"at least one recipient"),
        ({"segment_size": 0}, r"segment size"),
        ({"segment_size": envelope.MAX_SEGMENT + 1}, r"segment size"),
    ],
)
def test_seal_refuses_impossible_arguments(changes: dict[str, Any], message: str) -> None:
    k = party_keys("classic")
    args: dict[str, Any] = {"recipients": [k.jpn.public()], "segment_size": 64, **changes}
    with pytest.raises(EnvelopeError, match=message):
        sealer("classic").seal(b"x", make_label(), **args)


def test_seal_refuses_a_label_of_another_agreement() -> None:
    k = party_keys("classic")
    with pytest.raises(LabelInvalid, match=r"us-kr-jp-tisa-2014"):
        sealer("classic").seal(b"x", make_label(agreement="us-kr-jp-tisa-2014"), [k.jpn.public()])


# --- open refuses intact envelopes it must not open ---------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_open_without_a_wrapped_key_is_not_a_recipient(suite: str) -> None:
    env, _ = sample(suite)
    assert refused(opener(suite, party_keys(suite).jpn_other), env) is NotARecipient


@pytest.mark.parametrize("suite", SUITES)
def test_open_with_an_untrusted_signer(suite: str) -> None:
    env, _ = sample(suite)
    k = party_keys(suite)
    assert refused(opener(suite, trusted=[k.kor_other.public(), k.jpn.public()]), env) is UnknownSigner
    assert refused(opener(suite, trusted=[]), env) is UnknownSigner


@pytest.mark.parametrize("suite", SUITES)
def test_open_under_an_agreement_of_the_other_suite_is_unsupported(suite: str) -> None:
    env, _ = sample(suite)
    other = "classic" if suite == "pq-hybrid" else "pq-hybrid"
    assert refused(opener(other), env) is UnsupportedVersion


@pytest.mark.parametrize(("suite", "other"), [("classic", "pq-hybrid"), ("pq-hybrid", "classic")])
def test_opener_refuses_a_recipient_key_of_the_wrong_suite(suite: str, other: str) -> None:
    with pytest.raises(EnvelopeError, match=rf"recipient key is {other}"):
        Opener(party_keys(other).jpn, [party_keys(suite).kor.public()], agreement(suite))


def test_open_refuses_a_label_this_agreement_does_not_cover() -> None:
    """Sealed under a laxer file with the same id, a Top Secret label is refused on open (R3)."""
    data = agreement_data()
    data["levels"][1]["JPN"] = ["極秘"]
    data["levels"][1].pop("receive_as")
    data["levels"].append({"name": "TOP SECRET", "KOR": ["군사I급비밀"], "JPN": ["特定秘密"]})
    lax = parse(data, "lax")
    k = party_keys("classic")
    env = Sealer(k.kor, lax).seal(b"x", make_label(classification="군사I급비밀"), [k.jpn.public()])
    with pytest.raises(LabelInvalid, match=r"R3"):
        opener("classic").open(env)


@pytest.mark.parametrize(
    "data",
    [b"", b"GSO", b"GSOM", b"GSOX\x01", b"gsom\x01", b"PK\x03\x04" + bytes(100), b"GSOM\x00", b"GSOM\x02" + bytes(40)],
)
def test_not_an_envelope_or_another_version(data: bytes) -> None:
    assert refused(shared_opener("classic"), data) is UnsupportedVersion


# --- tampering: flips in every region ------------------------------------------------------------


def expected_for_flip(env: bytes, suite: str, name: str, offset: int) -> set[type[Exception]]:
    """What flipping bit 0 of byte ``offset`` of region ``name`` must be refused as."""
    if name in ("magic", "version"):
        return {UnsupportedVersion}
    if name == "header":
        raw = region(env, "header")
        for key, error in (("signer", UnknownSigner), ("suite", UnsupportedVersion)):
            start = raw.index(f'"{key}":"'.encode()) + len(key) + 4
            if start <= offset < raw.index(b'"', start):
                return {error}
        return {Tampered}
    if name in ("label-length", "label"):
        # Unreadable or off-agreement: LabelInvalid; readable but not what was sealed: Tampered.
        return {LabelInvalid, Tampered}
    if name == "keyblock":
        raw = region(env, "keyblock")
        kid = party_keys(suite).jpn.public().kid.encode()
        start = raw.index(kid)
        if start <= offset < start + len(kid):
            return {NotARecipient}  # the entry is no longer this recipient's
        if start - len(b'"kid":"') <= offset < start:
            return {NotARecipient, Tampered}  # "kid" renamed: missing, or keys no longer sorted
        return {Tampered}
    return {Tampered}  # header/keyblock lengths, every segment byte, the trailer


def positions(env: bytes, start: int, end: int, rng: random.Random) -> list[int]:
    """Every offset of a region of up to 512 bytes; of a longer one (ML-KEM and ML-DSA
    base64), both ends, every key id, and a random sample in between, to keep the run short."""
    if end - start <= 512:
        return list(range(start, end))
    chosen = {*range(start, start + 128), *range(end - 128, end), *rng.sample(range(start, end), 256)}
    at = env.find(b'"kid":"', start, end)
    while at != -1:
        chosen.update(range(at, at + 40))
        at = env.find(b'"kid":"', at + 1, end)
    return sorted(chosen)


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_byte_is_refused_with_the_error_of_its_region(suite: str) -> None:
    env, _ = sample(suite)
    op = shared_opener(suite)  # shared on purpose: its caches must not matter
    rng = random.Random(suite)
    seen: dict[str, set[type[Exception]]] = {}
    for name, start, end in regions(env):
        for i in positions(env, start, end, rng):
            got = refused(op, flip(env, i))
            assert got in expected_for_flip(env, suite, name, i - start), (name, i - start, got)
            seen.setdefault(name.removeprefix("segment0-").split("-")[0], set()).add(got)
    # Each determinate error was actually reached, not just allowed.
    assert seen["magic"] == seen["version"] == {UnsupportedVersion}
    assert seen["header"] == {Tampered, UnknownSigner, UnsupportedVersion}
    assert seen["label"] == {LabelInvalid, Tampered}
    assert seen["keyblock"] == {Tampered, NotARecipient}
    assert seen["trailer"] == {Tampered}


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("mask", [0x80, 0xFF])
def test_flipping_high_bits_is_refused_too(suite: str, mask: int) -> None:
    env, _ = sample(suite)
    op = shared_opener(suite)
    for name, start, end in regions(env):
        for i in sorted({start, (start + end) // 2, end - 1}) if end > start else ():
            got = refused(op, flip(env, i, mask))
            if name.startswith(("segment", "trailer")):
                assert got is Tampered, (name, i)


@pytest.mark.parametrize("suite", SUITES)
def test_every_segment_region_flip_is_tampered(suite: str) -> None:
    env, _ = sample(suite)
    names = [n for n, s, e in regions(env) if n.startswith("segment") and e > s]
    assert len(names) == 4 * 4  # flag, length, body, tag of four segments
    op = shared_opener(suite)
    for name, start, end in regions(env):
        if name in names:
            assert refused(op, flip(env, start)) is Tampered
            assert refused(op, flip(env, end - 1)) is Tampered


@pytest.mark.parametrize("suite", SUITES)
def test_non_canonical_base64_in_the_trailer_is_tampered(suite: str) -> None:
    """Same signature bytes, other spelling: the unsigned trailer has one encoding only."""
    env, _ = sample(suite)

    def respell(trailer: dict[str, Any]) -> None:
        sig = trailer["ed25519"]
        assert sig.endswith("==")  # 64 bytes: the last character carries 4 unused bits
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        other = alphabet[alphabet.index(sig[-3]) ^ 0x01]
        trailer["ed25519"] = sig[:-3] + other + "=="
        assert base64.b64decode(trailer["ed25519"]) == base64.b64decode(sig)

    assert refused(shared_opener(suite), with_trailer_field(env, respell)) is Tampered


# --- tampering: truncation, reordering, grafts ---------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_truncation_anywhere_is_refused(suite: str) -> None:
    env, _ = sample(suite)
    op = shared_opener(suite)
    boundaries = {s for _, s, _ in regions(env)} | {e for _, _, e in regions(env)}
    cuts = sorted(boundaries | set(random.Random(7).sample(range(len(env)), 200)) | set(range(12)))
    for cut in cuts:
        if cut == len(env):
            continue
        expected = UnsupportedVersion if cut < 5 else Tampered
        assert refused(op, env[:cut]) is expected, cut


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    "rearrange",
    [
        pytest.param(lambda s: [s[1], s[0], s[2], s[3]], id="swap-0-1"),
        pytest.param(lambda s: [s[0], s[2], s[1], s[3]], id="swap-1-2"),
        pytest.param(lambda s: [s[0], s[1], s[3], s[2]], id="swap-final"),
        pytest.param(lambda s: [s[0], s[2], s[3]], id="drop-middle"),
        pytest.param(lambda s: [s[1], s[2], s[3]], id="drop-first"),
        pytest.param(lambda s: [s[0], s[1], s[2]], id="drop-final"),
        pytest.param(lambda s: [s[0], s[1], s[1], s[2], s[3]], id="duplicate-middle"),
        pytest.param(lambda s: [s[0], s[1], s[2], s[3], s[3]], id="duplicate-final"),
        pytest.param(lambda s: [s[0], s[0], s[1], s[2], s[3]], id="duplicate-first"),
        pytest.param(lambda s: [s[0], s[1], s[2], bytes([0]) + s[3][1:]], id="final-marked-more"),
    ],
)
def test_reordered_dropped_or_duplicated_segments_are_tampered(
    suite: str, rearrange: Callable[[list[bytes]], list[bytes]]
) -> None:
    env, _ = sample(suite)
    head, segs, trailer = split(env)
    assert len(segs) == 4
    assert refused(shared_opener(suite), head + b"".join(rearrange(segs)) + trailer) is Tampered


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("extra", [b"\x00", b"GSOM\x01", b"\x00\x00\x00\x00", bytes(1000)])
def test_appended_bytes_are_tampered(suite: str, extra: bytes) -> None:
    env, _ = sample(suite)
    assert refused(shared_opener(suite), env + extra) is Tampered


@pytest.mark.parametrize("suite", SUITES)
def test_grafted_regions_are_refused(suite: str) -> None:
    k = party_keys(suite)
    s = sealer(suite)  # one Sealer: both envelopes share the epoch key, the strongest case
    a_label = make_label(suite)
    b_label = make_label(suite, item_id="5a3c1e0b-7777-4d3c-8f00-000000000002")
    a = s.seal(b"A" * 100, a_label, [k.jpn.public()], 64)
    b = s.seal(b"B" * 100, b_label, [k.jpn.public()], 64)
    op = opener(suite)

    def graft(into: bytes, source: bytes, *names: str) -> bytes:
        for name in names:
            into = with_block(into, name, region(source, name))
        return into

    assert refused(op, graft(a, b, "label")) is Tampered  # the label belongs to another header
    assert refused(op, graft(a, b, "header", "label")) is Tampered  # the data key is bound to both
    assert refused(op, graft(a, b, "header", "label", "keyblock")) is Tampered  # segments of another key
    assert refused(op, graft(a, b, "trailer")) is Tampered
    head_a, _, trailer_a = split(a)
    _, segs_b, _ = split(b)
    assert refused(op, head_a + b"".join(segs_b) + trailer_a) is Tampered


@pytest.mark.parametrize("suite", SUITES)
def test_a_downgraded_label_for_the_same_item_is_tampered(suite: str) -> None:
    """The same item sealed at two levels: the lower label cannot be moved onto the higher envelope."""
    k = party_keys(suite)
    s = sealer(suite)
    high = s.seal(b"secret", make_label(suite), [k.jpn.public()], 64)
    low = s.seal(b"secret", make_label(suite, classification="군사III급비밀"), [k.jpn.public()], 64)
    assert region(high, "header") == region(low, "header")
    assert region(high, "label") != region(low, "label")
    assert refused(opener(suite), with_block(high, "label", region(low, "label"))) is Tampered


# --- crafted blocks that are well framed but hostile ---------------------------------------------


def header_of(env: bytes) -> dict[str, Any]:
    return json.loads(region(env, "header"))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("signer", ["x"], Tampered),
        ("signer", {"kid": "x"}, Tampered),
        ("item_id", 7, Tampered),
        ("segment_size", 0, Tampered),
        ("segment_size", envelope.MAX_SEGMENT + 1, Tampered),
        ("segment_size", True, Tampered),
        ("v", 2, Tampered),
        ("suite", "classic-v2", UnsupportedVersion),
    ],
)
def test_crafted_header_values(field: str, value: Any, expected: type[Exception]) -> None:
    env, _ = sample("classic")
    header = {**header_of(env), field: value}
    assert refused(shared_opener("classic"), with_block(env, "header", canonical(header))) is expected


@pytest.mark.parametrize(
    "raw", [b"1" * 5000, b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"", b"null", b'{"v":1}', b"{} "]
)
@pytest.mark.parametrize("name", ["header", "keyblock", "trailer"])
def test_unreadable_json_blocks_are_tampered(name: str, raw: bytes) -> None:
    env, _ = sample("classic")
    assert refused(shared_opener("classic"), with_block(env, name, raw)) is Tampered


@pytest.mark.parametrize(
    "raw",
    [
        b"1" * 5000,
        b"[" * 100_000,
        b"\xff",
        None,  # a year-1 instant with an offset: out of range once normalised to UTC
    ],
)
def test_unreadable_labels_are_label_invalid(raw: bytes | None) -> None:
    env, _ = sample("classic")
    if raw is None:
        raw = canonical({**json.loads(region(env, "label")), "created_at": "0001-01-01T00:00:00+01:00"})
    assert refused(shared_opener("classic"), with_block(env, "label", raw)) is LabelInvalid


def test_block_longer_than_the_limit_is_tampered() -> None:
    env, _ = sample("classic")
    rs = {n: (s, e) for n, s, e in regions(env)}
    start = rs["header-length"][0]
    bad = env[:start] + struct.pack(">I", envelope.MAX_BLOCK + 1) + env[start + 4 :]
    assert refused(shared_opener("classic"), bad) is Tampered


# --- fuzz (hypothesis) ----------------------------------------------------------------------------

POSITION = st.integers(min_value=0, max_value=1 << 16)
MUTATION = st.one_of(
    st.tuples(st.just("xor"), POSITION, st.integers(1, 255)),
    st.tuples(st.just("set"), POSITION, st.integers(0, 255)),  # may leave the byte as it was
    st.tuples(st.just("insert"), POSITION, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), POSITION, st.integers(1, 64)),
)


def mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in ops:
        if kind == "insert":
            i = pos % (len(buf) + 1)
            buf[i:i] = arg
        elif buf:
            i = pos % len(buf)
            if kind == "xor":
                buf[i] ^= arg
            elif kind == "set":
                buf[i] = arg
            else:
                del buf[i : i + arg]
    return bytes(buf)


def check_only_exact_bytes_open(suite: str, data: bytes) -> None:
    env, payload = sample(suite)
    outcome = attempt(shared_opener(suite), data)
    if data == env:
        assert outcome == (make_label(suite), payload)
    else:
        assert isinstance(outcome, SPECIFIC), "a modified envelope opened"


@pytest.mark.parametrize("suite", SUITES)
@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_mutations_only_refuse_or_open_the_original(suite: str, ops: list[tuple[str, int, Any]]) -> None:
    check_only_exact_bytes_open(suite, mutate(sample(suite)[0], ops))


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"GSOM\x01" + b)))
def test_fuzz_garbage_is_refused(data: bytes) -> None:
    check_only_exact_bytes_open("classic", data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
B64 = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())


def fuzz_dict(original: dict[str, Any], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The original object with some values replaced, some keys dropped and some added."""
    keys_ = sorted(original)
    return st.tuples(
        st.dictionaries(st.sampled_from(keys_), values, max_size=len(keys_)),
        st.sets(st.sampled_from(keys_), max_size=2),
        st.dictionaries(st.text(max_size=6), JSON, max_size=1),
    ).map(lambda t: {**{k: v for k, v in original.items() if k not in t[1]}, **t[0], **t[2]})


@functools.cache
def sample_blocks(suite: str) -> dict[str, Any]:
    env, _ = sample(suite)
    return {name: json.loads(region(env, name)) for name in ("header", "label", "keyblock", "trailer")}


@pytest.mark.parametrize("suite", SUITES)
@FUZZ
@given(data=st.data())
def test_fuzz_well_framed_hostile_blocks(suite: str, data: st.DataObject) -> None:
    env, _ = sample(suite)
    blocks = sample_blocks(suite)
    name = data.draw(st.sampled_from(["header", "label", "keyblock", "trailer"]))
    values = JSON | B64
    if name == "keyblock":
        entries = blocks["keyblock"]
        mine = data.draw(st.sampled_from(range(len(entries))))
        changed = data.draw(fuzz_dict(entries[mine], values))
        new: Any = [changed if i == mine else e for i, e in enumerate(entries)]
    elif name == "trailer":
        trailer = blocks["trailer"]
        batch = data.draw(fuzz_dict(trailer["batch"], values | st.lists(B64, max_size=3)))
        new = {**data.draw(fuzz_dict(trailer, values)), "batch": batch}
    else:
        new = data.draw(fuzz_dict(blocks[name], values))
    check_only_exact_bytes_open(suite, with_block(env, name, canonical(new)))


# --- regression: the region map above agrees with the writer ----------------------------------------


def test_regions_cover_a_sample_as_documented() -> None:
    env, _ = sample("classic")
    names = [n for n, _, _ in regions(env)]
    assert names[:8] == [
        "magic",
        "version",
        "header-length",
        "header",
        "label-length",
        "label",
        "keyblock-length",
        "keyblock",
    ]
    assert names[-2:] == ["trailer-length", "trailer"]
    assert env[:5] == b"GSOM\x01"
    header = header_of(env)
    assert header == {
        "v": 1,
        "suite": "classic",
        "agreement": "jp-kr-gsomia-2016",
        "item_id": make_label().item_id,
        "originator": "KOR",
        "signer": party_keys("classic").kor.public().kid,
        "segment_size": 64,
    }
