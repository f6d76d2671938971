"""The user API's record body names the same kinds as the core: a kind added to one and not
the other would be refused at the door, or accepted with no check behind it."""

from __future__ import annotations

import typing

from gsomia.core import records
from gsomia.node.api.models import RecordIn


def test_the_record_body_accepts_exactly_the_kinds_the_core_checks() -> None:
    accepted = typing.get_args(RecordIn.model_fields["kind"].annotation)
    assert sorted(accepted) == sorted(records.KINDS)
