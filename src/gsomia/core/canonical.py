"""Canonical JSON: the one encoding every signed or hashed value in gsomia is written in.

Keys sorted, no whitespace, non-ASCII as itself, UTF-8: labels, envelopes, ledger entries,
records, key statements, receipts and partner files. One encoding means a value hashed by one
module verifies in another, and an auditor can rebuild any of them with ``json.dumps(obj,
sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()``.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["canonical", "canonical_text", "loads"]


def _canonical_chunks() -> Callable[[Any, int], Sequence[str]]:
    # ``json.dumps`` builds this (C) encoder afresh on every call; build it once, with
    # the arguments ``JSONEncoder.iterencode`` would give it, so the output is the same.
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False)
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


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: ``canonical_text`` in UTF-8."""
    return "".join(_chunks(obj, 0)).encode("utf-8")


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value or the same error, with fewer calls when
    the text is one JSON value with nothing around it (as canonical JSON is)."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, json.JSONDecodeError):
        return json.loads(text)  # its own error, or a value after leading whitespace
    return value if end == len(text) else json.loads(text)
