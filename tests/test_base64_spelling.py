"""One spelling per signature: a signature lies outside what it signs, so a second base64
spelling of the same bytes (other unused bits in the last character) would make a second
valid copy of a signed statement, record or tree head. Every decoder refuses it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from gsomia.core import keys, records
from gsomia.core.canonical import b64, unb64
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.core.ledger import TreeHead, sign_head
from test_keyring import chain


def respelt(text: str) -> str:
    """``text`` with the unused low bits of its last base64 character set: the same bytes."""
    assert text.endswith("=")
    body = text.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(body[-1])
    other = alphabet[last | (0b1111 if text.endswith("==") else 0b11)]
    changed = body[:-1] + other + text[len(body) :]
    assert changed != text
    assert base64.b64decode(changed) == base64.b64decode(text)  # what lenient decoders take
    return changed


def test_the_decoder_takes_its_own_spelling_and_refuses_any_other() -> None:
    raw = bytes(range(64))
    assert unb64(b64(raw)) == raw
    for bad in (respelt(b64(raw)), b64(raw).rstrip("="), " " + b64(raw), b64(raw) + "\n"):
        with pytest.raises(ValueError, match="not canonical base64"):
            unb64(bad)


def test_a_rotation_with_a_signature_spelt_another_way_is_refused() -> None:
    _, rotations = chain(n=2)
    data = json.loads(rotations[0].to_bytes())
    data["signatures"]["old_ed25519"] = respelt(data["signatures"]["old_ed25519"])
    with pytest.raises(KeyRotationInvalid, match="canonical base64"):
        Rotation.from_dict(data)


def test_a_record_with_its_signature_spelt_another_way_is_refused() -> None:
    key = keys.generate("KOR", "classic")
    at = datetime(2019, 8, 1, tzinfo=UTC)
    record = records.make(key, "destruction", "KOR", "kor.authority", "item-1", at, method="shredded")
    chain_of = KeyHistory.start(key.public())
    assert records.verify(record.as_dict(), chain_of, "KOR").body == record.body
    forged = {**record.as_dict(), "signature": respelt(record.signature)}
    with pytest.raises(records.RecordInvalid, match="signature is malformed"):
        records.verify(forged, chain_of, "KOR")


def test_a_tree_head_with_its_signature_spelt_another_way_is_refused() -> None:
    key = keys.generate("KOR", "classic")
    head = sign_head(key, "KOR", 3, b"\x01" * 32, datetime(2019, 8, 1, tzinfo=UTC))
    data = head.as_dict()
    assert TreeHead.from_dict(data) == head
    with pytest.raises(ValueError, match="not a signed tree head"):
        TreeHead.from_dict({**data, "signature": respelt(data["signature"])})
