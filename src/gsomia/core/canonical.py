"""Canonical JSON: the one encoding every signed or hashed value in gsomia is written in.

Keys sorted, no whitespace, non-ASCII as itself, UTF-8: labels, envelopes, ledger entries,
records, key statements, receipts and partner files. One encoding means a value hashed by one
module verifies in another, and an auditor can rebuild any of them with ``json.dumps(obj,
sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()``.

Key files and key rotation statements are written here too: their content is ASCII
(party codes, suites, instants, base64), where this encoding and ``ensure_ascii=True``
give the same bytes.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

__all__ = ["b64", "canonical", "canonical_text", "loads", "unb64"]


Default = Callable[[Any], Any]


@cache
def _canonical_chunks(default: Default | None = None) -> Callable[[Any, int], Sequence[str]]:
    # ``json.dumps`` builds this (C) encoder afresh on every call; build it once per
    # ``default``, with the arguments ``JSONEncoder.iterencode`` would give it, so the
    # output is the same.
    encoder = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False, default=default
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python path
        return lambda obj, _: (encoder.encode(obj),)
    chunks: Callable[[Any, int], Sequence[str]] = make(
        None, encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    return chunks


_chunks = _canonical_chunks()
# What ``json.loads`` runs, without its wrappers (typeshed types the argument oddly).
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def canonical_text(obj: Any) -> str:
    """Canonical JSON text: keys sorted, no whitespace, non-ASCII as itself.

    Exactly ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``;
    shared by labels and envelopes."""
    return "".join(_chunks(obj, 0))


def canonical(obj: Any, default: Default | None = None) -> bytes:
    """Canonical JSON bytes: ``canonical_text`` in UTF-8.

    ``default`` is ``json.dumps``'s: what a value JSON has no type for is written as.
    Without it such a value is refused (``TypeError``); the ledger passes ``str``
    because its entries have always been written so (an instant as its ``str()``), and
    old entries must hash the same. JSON values are written the same either way."""
    chunks = _chunks if default is None else _canonical_chunks(default)
    return "".join(chunks(obj, 0)).encode("utf-8")


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value or the same error, with fewer calls when
    the text is one JSON value with nothing around it (as canonical JSON is)."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, json.JSONDecodeError):
        return json.loads(text)  # its own error, or a value after leading whitespace
    return value if end == len(text) else json.loads(text)


def b64(raw: bytes) -> str:
    """Standard base64 with padding: how signatures and keys are spelt in every format."""
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes ``text`` spells in base64, refused (ValueError) unless ``b64`` spells them so:
    a signature sits outside what it signs, so the unused bits of its last character, or any
    other second spelling, must not make a second valid copy of a signed value."""
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raw = None
    if raw is None or b64(raw) != text:
        raise ValueError("not canonical base64")
    return raw
