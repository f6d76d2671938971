"""Key rotation, the pure part: statements, chains, and what each key is trusted for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import keys
from gsomia.core.envelope import Opener, Sealer, UnknownSigner
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation, rotate
from gsomia.core.keys import PrivateKeys
from gsomia.core.label import Label
from test_envelope import agreement

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@cache
def chain_keys(suite: str, n: int) -> tuple[PrivateKeys, ...]:
    return tuple(keys.generate("KOR", suite) for _ in range(n))  # type: ignore[arg-type]


def chain(suite: str = "classic", n: int = 4) -> tuple[tuple[PrivateKeys, ...], list[Rotation]]:
    ks = chain_keys(suite, n)
    rotations = [rotate(ks[i], ks[i + 1], i + 1, T0 + timedelta(days=30 * (i + 1)), 10 * (i + 1)) for i in range(n - 1)]
    return ks, rotations


@pytest.mark.parametrize("suite", ["classic", "pq-hybrid"])
def test_a_rotation_round_trips_and_is_signed_by_both_keys(suite: str) -> None:
    ks, rotations = chain(suite, 2)
    r = rotations[0]
    again = Rotation.from_bytes(r.to_bytes())
    assert again.to_bytes() == r.to_bytes()
    assert (again.old.kid, again.new.kid) == (ks[0].public().kid, ks[1].public().kid)
    expected = {"old_ed25519", "new_ed25519"} | ({"old_mldsa65", "new_mldsa65"} if suite == "pq-hybrid" else set())
    assert set(r.signatures) == expected


def test_any_trusted_key_of_the_chain_builds_the_whole_chain() -> None:
    ks, rotations = chain()
    for k in ks:  # the first key, the current one, or one in between
        history = KeyHistory.build(k.public(), rotations)
        assert [key.kid for key in history.keys] == [key.public().kid for key in ks]
        assert history.current.kid == ks[-1].public().kid


def test_a_chain_without_the_trusted_key_is_refused() -> None:
    _, rotations = chain()
    stranger = keys.generate("KOR", "classic").public()
    with pytest.raises(KeyRotationInvalid, match="does not contain the trusted key"):
        KeyHistory.build(stranger, rotations)


def test_what_each_key_is_trusted_for() -> None:
    ks, rotations = chain(n=3)  # rotations at T0+30d (tree size 10) and T0+60d (tree size 20)
    h = KeyHistory.build(ks[0].public(), rotations)
    kid = [k.public().kid for k in ks]
    # Heads: by size; the rotation entry itself (index 10) is covered by the new key.
    assert [h.key_for_head(s).kid for s in (0, 10, 11, 20, 21, 10_000)] == [
        kid[0],
        kid[0],
        kid[1],
        kid[1],
        kid[2],
        kid[2],
    ]
    # Items and records: a key is trusted for what was released before it was retired.
    assert [k.kid for k in h.trusted_for(T0)] == kid
    assert [k.kid for k in h.trusted_for(T0 + timedelta(days=45))] == kid[1:]
    assert [k.kid for k in h.trusted_for(T0 + timedelta(days=60))] == kid[2:]
    assert h.windows() == {kid[0]: rotations[0].at, kid[1]: rotations[1].at, kid[2]: None}


def test_a_chain_that_skips_reorders_or_reuses_is_refused() -> None:
    ks, rotations = chain()
    start = KeyHistory.start(ks[0].public())
    with pytest.raises(KeyRotationInvalid, match="expected rotation 1"):
        start.extend(rotations[1])
    back = rotate(ks[1], ks[0], 2, T0 + timedelta(days=365), 99)
    with pytest.raises(KeyRotationInvalid, match="was used before"):
        start.extend(rotations[0]).extend(back)
    early = rotate(ks[1], ks[2], 2, rotations[0].at, 99)
    with pytest.raises(KeyRotationInvalid, match="must come after"):
        start.extend(rotations[0]).extend(early)
    foreign = rotate(keys.generate("KOR", "classic"), ks[1], 1, T0, 0)
    with pytest.raises(KeyRotationInvalid, match="not the current"):
        start.extend(foreign)


def test_a_statement_signed_by_only_one_of_its_keys_is_refused() -> None:
    ks, rotations = chain(n=2)
    data = rotations[0].as_dict()
    forged = rotate(ks[0], keys.generate("KOR", "classic"), 1, T0, 0)  # the old key, some other new key
    data["signatures"]["new_ed25519"] = forged.signatures["new_ed25519"]
    with pytest.raises(KeyRotationInvalid, match="new key's signature"):
        Rotation.from_dict(data)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_change_to_a_statement_is_refused(data: st.DataObject) -> None:
    _, rotations = chain(n=2)
    raw = bytearray(rotations[0].to_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0x20, 0x7E).filter(lambda b: b != raw[at]))
    raw[at] = new
    with pytest.raises(KeyRotationInvalid):
        Rotation.from_bytes(bytes(raw))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(0, 200), st.sampled_from(["at", "tree_size", "number", "party"]))
def test_a_restated_field_breaks_both_signatures(n: int, value: int, field: str) -> None:
    _, rotations = chain()
    data = json.loads(rotations[n - 1].to_bytes())
    body = data["statement"]
    changed = {
        "at": (T0 + timedelta(seconds=value + 1)).isoformat(),
        "tree_size": value + 1000,
        "number": n + value + 1,
        "party": "JPN",
    }[field]
    body[field] = changed
    with pytest.raises(KeyRotationInvalid):
        Rotation.from_dict(data)


def test_the_opener_trusts_a_retired_key_only_for_items_released_before_its_retirement() -> None:
    ks, rotations = chain(n=2)
    jpn = keys.generate("JPN", "classic")
    history = KeyHistory.build(ks[0].public(), rotations)
    ag = agreement("classic")

    def sealed(by: PrivateKeys, at: datetime) -> bytes:
        label = Label(
            item_id=f"00000000-0000-4000-8000-{int(at.timestamp()):012d}",
            agreement=ag.id,
            originator="KOR",
            classification="군사II급비밀",
            releasable_to=("JPN",),
            created_at=at,
        )
        return Sealer(by, ag).seal(b"report", label, [jpn.public()])

    opener = Opener(jpn, history.keys, ag, retired=history.windows())
    before, after = rotations[0].at - timedelta(seconds=1), rotations[0].at
    assert opener.open(sealed(ks[0], before))[1] == b"report"
    assert opener.open(sealed(ks[1], after))[1] == b"report"
    with pytest.raises(UnknownSigner, match="retired"):
        opener.open(sealed(ks[0], after))  # a stolen retired key cannot sign new items


def test_the_opener_opens_items_sealed_to_a_retired_own_key() -> None:
    kor = keys.generate("KOR", "classic")
    old, new = keys.generate("JPN", "classic"), keys.generate("JPN", "classic")
    ag = agreement("classic")
    label = Label(
        item_id="00000000-0000-4000-8000-000000000001",
        agreement=ag.id,
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=("JPN",),
        created_at=T0,
    )
    env_old = Sealer(kor, ag).seal(b"to the old key", label, [old.public()])
    env_new = Sealer(kor, ag).seal(b"to the new key", label, [new.public()])
    opener = Opener([new, old], [kor.public()], ag)
    assert opener.open(env_old)[1] == b"to the old key"
    assert opener.open(env_new)[1] == b"to the new key"
    assert opener.kid == new.public().kid
