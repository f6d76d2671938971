"""The body of a delivery of items, as the sender writes it and the receiver reads it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.node.api.models import parse_envelopes
from gsomia.node.workers.delivery import item_run, items_body


@given(st.sampled_from(["flash", "bulk"]), st.lists(st.binary(max_size=300), max_size=20))
def test_a_body_is_the_json_the_receiver_reads_back_into_the_same_envelopes(lane: str, envelopes: list[bytes]) -> None:
    body = items_body(lane, envelopes)
    assert json.loads(body) == {"lane": lane, "envelopes": [base64.b64encode(e).decode() for e in envelopes]}
    assert parse_envelopes(body) == (lane, envelopes)


def test_a_lane_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lane"):
        items_body('bulk","envelopes":[', [b"x"])


def _rows(kinds_and_sizes: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"kind": kind, "body": b"x" * size, "key": ("main", n)} for n, (kind, size) in enumerate(kinds_and_sizes)]


def _size(rows: list[dict[str, Any]]) -> int:
    return sum(len(r["body"]) for r in rows)


@given(
    st.lists(st.tuples(st.sampled_from(["item", "item", "item", "note"]), st.integers(0, 100)), max_size=30),
    st.integers(1, 400),
)
def test_a_delivery_of_items_stops_at_the_first_other_row_and_within_its_byte_budget(
    rows: list[tuple[str, int]], budget: int
) -> None:
    given_rows = _rows(rows)
    run = item_run(given_rows, budget)
    assert run == given_rows[: len(run)]  # a head of the claim, in order
    assert all(r["kind"] == "item" for r in run)
    if given_rows and given_rows[0]["kind"] == "item":
        assert run  # at least one item goes, however large
    if len(run) > 1:
        assert _size(run) <= budget
    if len(run) < len(given_rows) and given_rows[len(run)]["kind"] == "item" and run:
        # cut short only because the next item would not fit
        assert _size(given_rows[: len(run) + 1]) > budget
