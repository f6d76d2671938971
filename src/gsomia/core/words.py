"""Counts in plain words: "1 entry" and "2 entries", in the number the count takes."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number ``n`` takes: ``count(1, "entry", "entries")`` is "1 entry"."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
