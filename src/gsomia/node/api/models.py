"""What a request body must be: the pydantic models of both APIs, and the parsers of the bodies
the handlers read raw (a provide request, a partner's delivery, note, alarm or record)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gsomia.node.api import problems
from gsomia.node.api.problems import Problem
from gsomia.node.service import ItemSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemIn(Strict):
    to: str = Field(min_length=3, max_length=3, description="Recipient party (ISO 3166-1 alpha-3).")
    classification: str = Field(min_length=1, max_length=64, description="Originator's national marking.")
    payload_b64: str | None = Field(default=None, max_length=16 << 20)
    text: str | None = Field(default=None, max_length=1 << 20)
    releasable_to: list[str] = Field(default_factory=list, max_length=8)
    purposes: list[str] = Field(default_factory=list, max_length=16)
    compartments: list[str] = Field(default_factory=list, max_length=16)

    def spec(self) -> ItemSpec:
        if (self.payload_b64 is None) == (self.text is None):
            raise Problem(400, "Invalid request", "give exactly one of payload_b64 and text")
        if self.payload_b64 is not None:
            try:
                payload = base64.b64decode(self.payload_b64, validate=True)
            except (binascii.Error, ValueError):
                raise Problem(400, "Invalid request", "payload_b64 is not base64") from None
        else:
            payload = (self.text or "").encode("utf-8")
        return ItemSpec(
            self.to,
            self.classification,
            payload,
            tuple(self.releasable_to),
            tuple(self.purposes),
            tuple(self.compartments),
        )


class ProvideIn(Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)


class AlertIn(Strict):
    to: str = Field(min_length=3, max_length=3)
    classification: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=65536)
    compartments: list[str] = Field(default_factory=list, max_length=16)
    purposes: list[str] = Field(default_factory=list, max_length=16)

    def spec(self) -> ItemSpec:
        return ItemSpec(
            self.to, self.classification, self.text.encode("utf-8"), (), tuple(self.purposes), tuple(self.compartments)
        )


def _plausible(at: datetime) -> datetime:
    """An instant a note or an alarm can carry: any zone can still spell it (years 1900 to 9000)."""
    if at.year < 1900 or at.year > 9000:
        raise ValueError("an instant between the years 1900 and 9000")
    return at


# Instants from a request: the year 9999 in one zone is past the last datetime in another.
Instant = Annotated[datetime, AfterValidator(_plausible)]
AwareInstant = Annotated[AwareDatetime, AfterValidator(_plausible)]

NoteType = Literal["termination_notice", "suspend_notice", "resume_notice", "withdraw_notice"]


class NoteIn(Strict):
    to: str = Field(min_length=3, max_length=3, description="The other party to the agreement.")
    type: NoteType
    at: Instant | None = None
    conditions: list[str] = Field(default_factory=list, max_length=32)
    ref: str | None = Field(default=None, max_length=4096)


class RecordIn(Strict):
    kind: Literal[
        "consent_request",
        "consent_decision",
        "release",
        "compromise_report",
        "investigation",
        "reproduction",
        "translation",
        "destruction",
        "reclassification",
        "forward_approval",
    ]
    item_id: str = Field(min_length=36, max_length=36)
    recipient: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=36)
    report_id: str | None = Field(default=None, max_length=36)
    grant: bool | None = None
    reason: str | None = Field(default=None, max_length=4096)
    nature: Literal["loss", "compromise", "possible_compromise"] | None = None
    description: str | None = Field(default=None, max_length=16384)
    results: str | None = Field(default=None, max_length=16384)
    remedial_steps: str | None = Field(default=None, max_length=16384)
    closed: bool | None = None
    classification: str | None = Field(default=None, max_length=64)
    location: str | None = Field(default=None, max_length=256)
    language: str | None = Field(default=None, max_length=35)
    copy_id: str | None = Field(default=None, max_length=36)


class ClockIn(Strict):
    at: Instant


class PeerNoteIn(Strict):
    """A diplomatic note as the partner's node delivers it (``Node.record_note`` makes it)."""

    note_id: str = Field(min_length=36, max_length=36)
    agreement: str = Field(min_length=1, max_length=128)
    at: AwareInstant
    by: str = Field(min_length=3, max_length=3)
    type: NoteType
    conditions: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=32)
    ref: str | None = Field(default=None, max_length=4096)
    recorded_by: str | None = Field(default=None, max_length=128)


class PeerAlarmIn(Strict):
    """An alarm as the partner's node raises it (``NodeLedger.raise_alarm``)."""

    alarm_id: str = Field(min_length=1, max_length=36)
    at: AwareInstant
    kind: str = Field(min_length=1, max_length=64)
    about: str = Field(max_length=256)
    raised_by: str = Field(min_length=3, max_length=3)
    detail: str = Field(max_length=16384)


# The peer API reads raw bodies (their signature covers the exact bytes): their shapes, for
# the OpenAPI document a partner's developers and the fuzz tests read.
ENVELOPES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lane", "envelopes"],
    "properties": {
        "lane": {"type": "string", "enum": ["flash", "bulk"]},
        "envelopes": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
    },
}
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["body", "signature"],
    "properties": {"body": {"type": "object"}, "signature": {"type": "string", "contentEncoding": "base64"}},
}
ENVELOPES_EXPECTED = "expected {lane, envelopes: [base64]}"


def body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a handler that reads its body raw: the body's schema all the same."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_body(body: bytes, expected: str) -> Any:
    """A partner's body as JSON; nested past the parser's depth is as malformed as a stray byte."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Problem(400, "Invalid request", expected) from None


def peer_message(model: type[Strict], name: str, body: bytes) -> dict[str, Any]:
    """The partner's JSON object, checked field by field: a 422 problem names the first bad one."""
    data = json_body(body, f"a{'n' if name[0] in 'aeiou' else ''} {name} is a JSON object")
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise Problem(422, "Invalid message", problems.validation_detail(exc.errors(), name)[0]) from None
    return data  # type: ignore[no-any-return]  # a dict: the model took it


def parse_envelopes(body: bytes) -> tuple[str, list[bytes]]:
    """A partner's delivery of items: its lane and its envelopes (ValueError, KeyError or
    TypeError when it is not ``{lane, envelopes: [base64]}``)."""
    data = json_body(body, ENVELOPES_EXPECTED)
    lane = data["lane"]
    if lane not in ("flash", "bulk") or not isinstance(data["envelopes"], list):
        raise ValueError("bad lane or envelopes")
    return lane, [base64.b64decode(e, validate=True) for e in data["envelopes"]]


def parse_provide(body: bytes) -> list[ItemSpec]:
    try:
        parsed = ProvideIn.model_validate_json(body)
    except ValidationError as exc:
        detail, errors = problems.validation_detail(exc.errors(), "body")
        raise Problem(400, "Invalid request", detail, errors=errors) from None
    return [i.spec() for i in parsed.items]


# Sequence numbers are BIGINT in PostgreSQL: a larger cursor is bad input, not an overflow.
MAX_SEQ = (1 << 63) - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def event_id(value: str | None) -> int:
    """The stream's ``Last-Event-ID``: the sequence number of the last event the client saw."""
    if not value:
        return 0
    if not _EVENT_ID.fullmatch(value) or int(value) > MAX_SEQ:
        raise Problem(400, "Invalid request", "Last-Event-ID: expected an event id this stream sent")
    return int(value)


def aware(at: datetime | None, name: str) -> datetime | None:
    """``at`` if it carries a UTC offset (or is None); a naive instant is refused."""
    if at is not None and at.tzinfo is None:
        raise Problem(400, "Invalid request", f"{name} must carry a UTC offset")
    return at
