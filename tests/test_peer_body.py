"""The body of a delivery of items, as the sender writes it and the receiver reads it."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.node.app import _parse_envelopes
from gsomia.node.delivery import items_body


@given(st.sampled_from(["flash", "bulk"]), st.lists(st.binary(max_size=300), max_size=20))
def test_a_body_is_the_json_the_receiver_reads_back_into_the_same_envelopes(lane: str, envelopes: list[bytes]) -> None:
    body = items_body(lane, envelopes)
    assert json.loads(body) == {"lane": lane, "envelopes": [base64.b64encode(e).decode() for e in envelopes]}
    assert _parse_envelopes(body) == (lane, envelopes)


def test_a_lane_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lane"):
        items_body('bulk","envelopes":[', [b"x"])
