"""Security labels (STANAG 4774 shape) and their one canonical encoding.

A label says what an item is and who may have it: the agreement it is provided
under (the policy identifier), the originator, the originator's national
classification, the parties it is releasable to, caveats (originator control,
permitted purposes, need-to-know compartments), the route it travels, and when
it was created and is due for review.

Canonical bytes (``Label.to_bytes``): UTF-8 JSON, keys sorted, no whitespace,
strings NFC-normalised (Hangul and kana have several Unicode spellings), lists
sorted and de-duplicated, instants as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
``Label.from_bytes`` accepts only that exact encoding: it decodes, re-encodes
and compares, so one label has one byte string and a signature over it can never
be read two ways (the lesson of OpenTDF's ambiguous policy binding).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from gsomia.core.agreement.schemes import MarkingError, equivalent, level_of
from gsomia.core.agreement.terms import Agreement, Level
from gsomia.core.canonical import canonical, canonical_text, loads
from gsomia.core.errors import GsomiaError

LABEL_VERSION = 1
Route = Literal["direct", "trilateral"]
ROUTES: tuple[Route, ...] = ("direct", "trilateral")
_PARTY = re.compile(r"^[A-Z]{3}$")
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # str(uuid.UUID(...))
_KEYS = {
    "v",
    "item_id",
    "agreement",
    "originator",
    "classification",
    "releasable_to",
    "originator_control",
    "purposes",
    "compartments",
    "route",
    "created_at",
    "review_at",
}


class LabelInvalid(GsomiaError):
    """A label that is malformed, not canonical, or not valid under its agreement."""


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _is_nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


def _instant(at: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` from the
    year 1000 on (earlier years, whose ``%Y`` depends on the C library, a label refuses)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"  # ~4x faster than strftime


@dataclass(frozen=True, slots=True)
class Label:
    item_id: str
    agreement: str
    originator: str
    classification: str
    releasable_to: tuple[str, ...]
    created_at: datetime
    originator_control: bool = True
    purposes: tuple[str, ...] = ()
    compartments: tuple[str, ...] = ()
    route: Route = "direct"
    review_at: datetime | None = None
    _bytes: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise once so equal labels have equal bytes, then freeze the encoding.
        set_ = object.__setattr__
        set_(self, "classification", _nfc(self.classification))
        set_(self, "releasable_to", tuple(sorted(set(self.releasable_to))))
        set_(self, "purposes", tuple(sorted({_nfc(p) for p in self.purposes})))
        set_(self, "compartments", tuple(sorted({_nfc(c) for c in self.compartments})))
        if self.created_at.tzinfo is None or (self.review_at is not None and self.review_at.tzinfo is None):
            raise LabelInvalid("label: instants must carry a UTC offset")
        set_(self, "created_at", self.created_at.astimezone(UTC))
        if self.review_at is not None:
            set_(self, "review_at", self.review_at.astimezone(UTC))
        if self.created_at.year < 1000 or (self.review_at is not None and self.review_at.year < 1000):
            # Their spelling (``_instant``) does not read back: refused here, not when a partner reads it.
            raise LabelInvalid("label: instants before the year 1000 are not supported")
        self._check_shape()
        set_(self, "_bytes", self._encode())

    def _check_shape(self) -> None:
        if type(self.item_id) is not str or not _UUID_TEXT.fullmatch(self.item_id):  # the one spelling, else why
            try:
                canonical = str(uuid.UUID(self.item_id))
            except (ValueError, AttributeError, TypeError):
                raise LabelInvalid(f"label: item_id {self.item_id!r} is not a UUID") from None
            if self.item_id != canonical:  # one item, one spelling: braces, urn:, upper case and bare hex are refused
                raise LabelInvalid(f"label: item_id {self.item_id!r} is not in canonical form ({canonical})")
        for code in (self.originator, *self.releasable_to):
            if not isinstance(code, str) or not _PARTY.match(code):
                raise LabelInvalid(f"label: {code!r} is not an ISO 3166-1 alpha-3 party code")
        if not self.releasable_to:
            raise LabelInvalid("label: releasable_to must name at least one party")
        if not self.classification.strip() or not self.agreement.strip():
            raise LabelInvalid("label: classification and agreement must not be empty")
        if any(not p.strip() for p in (*self.purposes, *self.compartments)):
            raise LabelInvalid("label: purposes and compartments must not be empty text")
        if self.route not in ROUTES:
            raise LabelInvalid(f"label: route {self.route!r} is not one of {', '.join(ROUTES)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": LABEL_VERSION,
            "item_id": self.item_id,
            "agreement": _nfc(self.agreement),
            "originator": self.originator,
            "classification": self.classification,
            "releasable_to": list(self.releasable_to),
            "originator_control": self.originator_control,
            "purposes": list(self.purposes),
            "compartments": list(self.compartments),
            "route": self.route,
            "created_at": _instant(self.created_at),
            "review_at": None if self.review_at is None else _instant(self.review_at),
        }

    def _encode(self) -> bytes:
        return canonical(self.as_dict())

    def to_bytes(self) -> bytes:
        """The canonical encoding: what is signed, bound and stored."""
        return self._bytes

    @classmethod
    def from_dict(cls, data: Any) -> Label:
        if not isinstance(data, dict):
            raise LabelInvalid("label: must be a JSON object")
        unknown = set(data) - _KEYS
        if unknown:
            raise LabelInvalid(f"label: unknown key(s) {', '.join(sorted(unknown))}")
        missing = {"item_id", "agreement", "originator", "classification", "releasable_to", "created_at"} - set(data)
        if missing:
            raise LabelInvalid(f"label: missing key(s) {', '.join(sorted(missing))}")
        if data.get("v", LABEL_VERSION) != LABEL_VERSION:
            raise LabelInvalid(f"label: version {data.get('v')!r} is not supported (this is v{LABEL_VERSION})")

        def texts(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LabelInvalid(f"label: {key} must be a list of text")
            return tuple(value)

        for key in ("item_id", "agreement", "originator", "classification", "route"):
            if key in data and not isinstance(data[key], str):
                raise LabelInvalid(f"label: {key} must be text")
        control = data.get("originator_control", True)
        if not isinstance(control, bool):
            raise LabelInvalid("label: originator_control must be true or false")
        review = data.get("review_at")
        return cls(
            item_id=data["item_id"],
            agreement=data["agreement"],
            originator=data["originator"],
            classification=data["classification"],
            releasable_to=texts("releasable_to"),
            created_at=_parse_any_instant(data["created_at"], "created_at"),
            originator_control=control,
            purposes=texts("purposes"),
            compartments=texts("compartments"),
            route=data.get("route", "direct"),
            review_at=None if review is None else _parse_any_instant(review, "review_at"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Label:
        """Decode canonical bytes; any other spelling of the same label is refused."""
        try:
            text = raw.decode("utf-8")
            data = loads(text)
        # Over-long integers, deep nesting: whoever sent the bytes gets a refusal, not a crash.
        except (ValueError, RecursionError, OverflowError):  # incl. UnicodeDecodeError, JSONDecodeError
            raise LabelInvalid("label: not canonical JSON") from None
        label = _canonical_label(cls, data, raw, text)
        if label is not None:
            return label
        try:
            label = cls.from_dict(data)
        except (ValueError, RecursionError, OverflowError):  # dates out of range and the like
            raise LabelInvalid("label: not a valid label") from None
        if label.to_bytes() != raw:
            raise LabelInvalid("label: not in canonical form")
        return label


def _strictly_sorted_texts(value: object, nfc: bool) -> bool:
    """A list of text, sorted and de-duplicated (and NFC): what ``Label`` stores it as."""
    if type(value) is not list:
        return False
    previous: str | None = None
    for item in value:
        if type(item) is not str or (previous is not None and item <= previous) or (nfc and not _is_nfc(item)):
            return False
        previous = item
    return True


def _canonical_instant(value: object) -> datetime | None:
    """The instant ``value`` spells if that is its canonical spelling (else None): then
    ``_parse_any_instant(value).astimezone(UTC)``, and ``_instant`` of it is ``value``."""
    if type(value) is not str or len(value) != 27 or value[26] != "Z":
        return None
    return _canonical_instant_text(value)


@functools.lru_cache(maxsize=1024)
def _canonical_instant_text(value: str) -> datetime | None:
    # Remembered: the items of a batch share their release instant, and spelling an instant
    # back (``isoformat``) is most of what checking a label's fields costs.
    try:
        at = datetime.fromisoformat(value)  # "Z" is UTC itself (Python 3.11)
    except ValueError:
        return None
    if at.tzinfo is not UTC or at.year < 1000:  # labels refuse these (``Label.__post_init__``)
        return None
    # Spelled back exactly as ``_instant`` does for these years: nothing was normalised.
    return at if at.isoformat(timespec="microseconds") == value[:26] + "+00:00" else None


def _canonical_label(cls: type[Label], data: Any, raw: bytes, text: str) -> Label | None:
    """The label ``raw`` encodes if ``raw`` is already canonical, else None.

    The fast path of ``from_bytes``. It accepts exactly when ``from_dict`` followed by
    the re-encode-and-compare check would, and builds the same label: ``raw`` (decoded
    to ``text`` and ``data``) must be the canonical encoding of ``data`` (re-encoded and
    compared as text: UTF-8 maps text to bytes one to one), and every field
    must already be in the form ``Label`` normalises it to (types exact, text NFC,
    lists sorted and de-duplicated, instants canonical, all keys present), so that
    normalising would change nothing and ``to_bytes`` would give ``raw`` back. The
    shape checks are the same ones. Anything else (None) takes the general path,
    which refuses it with its usual error."""
    if type(data) is not dict or data.keys() != _KEYS:
        return None
    v, control, route = data["v"], data["originator_control"], data["route"]
    item_id, agreement, originator, classification = (
        data["item_id"],
        data["agreement"],
        data["originator"],
        data["classification"],
    )
    releasable_to, purposes, compartments = data["releasable_to"], data["purposes"], data["compartments"]
    if not (
        type(v) is int
        and v == LABEL_VERSION
        and type(control) is bool
        and type(route) is str
        and route in ROUTES
        and type(item_id) is str
        and type(agreement) is str
        and type(originator) is str
        and type(classification) is str
        and _is_nfc(agreement)
        and _is_nfc(classification)
        and agreement.strip()
        and classification.strip()
        and _PARTY.match(originator)
        and releasable_to
        and _strictly_sorted_texts(releasable_to, nfc=False)
        and all(_PARTY.match(p) for p in releasable_to)
        and _strictly_sorted_texts(purposes, nfc=True)
        and _strictly_sorted_texts(compartments, nfc=True)
        and all(p.strip() for p in purposes)
        and all(c.strip() for c in compartments)
    ):
        return None
    created_at = _canonical_instant(data["created_at"])
    review = data["review_at"]
    review_at = None if review is None else _canonical_instant(review)
    if created_at is None or (review is not None and review_at is None):
        return None
    if not _UUID_TEXT.fullmatch(item_id):  # the one spelling _check_shape accepts; others: the general path
        return None
    if canonical_text(data) != text:
        return None
    label = object.__new__(cls)  # every field set below, already in normal form: no __post_init__
    set_ = object.__setattr__
    set_(label, "item_id", item_id)
    set_(label, "agreement", agreement)
    set_(label, "originator", originator)
    set_(label, "classification", classification)
    set_(label, "releasable_to", tuple(releasable_to))
    set_(label, "created_at", created_at)
    set_(label, "originator_control", control)
    set_(label, "purposes", tuple(purposes))
    set_(label, "compartments", tuple(compartments))
    set_(label, "route", route)
    set_(label, "review_at", review_at)
    set_(label, "_bytes", bytes(raw))  # the canonical bytes themselves
    return label


def _parse_any_instant(value: object, key: str) -> datetime:
    """Hand-written labels (``policy explain``) may use any ISO 8601 instant with an offset."""
    if not isinstance(value, str):
        raise LabelInvalid(f"label: {key} must be an ISO 8601 instant")
    try:
        at = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise LabelInvalid(f"label: {key} {value!r} is not an ISO 8601 instant") from None
    if at.tzinfo is None:
        raise LabelInvalid(f"label: {key} {value!r} has no UTC offset")
    return at


def new_item_id() -> str:
    return str(uuid.uuid4())


def is_item_id(text: str) -> bool:
    """Whether ``text`` is an item id in its one spelling (lower-case UUID text)."""
    return _UUID_TEXT.fullmatch(text) is not None


def level(label: Label, agreement: Agreement) -> Level:
    """The agreement level of the label's classification (R3); refuses markings outside it."""
    try:
        return level_of(agreement, label.originator, label.classification)
    except MarkingError as exc:
        raise LabelInvalid(str(exc)) from None


def validate(label: Label, agreement: Agreement) -> Level:
    """Check a label against its agreement; returns its level."""
    if label.agreement != agreement.id:
        raise LabelInvalid(f"label: provided under {label.agreement!r}, not under {agreement.id!r}")
    if label.originator not in agreement.parties:
        raise LabelInvalid(f"label: originator {label.originator} is not a party to {agreement.id}")
    strangers = [p for p in label.releasable_to if p not in agreement.parties]
    if strangers:
        raise LabelInvalid(
            f"label: releasable_to names {', '.join(strangers)}, not a party to {agreement.id}; "
            "a third-party release needs the originator's consent (R5)"
        )
    if label.route == "direct" and len(agreement.parties) != 2:
        raise LabelInvalid(f"label: {agreement.id} is not a bilateral agreement; route must be trilateral (R18)")
    return level(label, agreement)


def marking_for(label: Label, agreement: Agreement, party: str) -> str:
    """The marking ``party`` shows on this item: its own equivalent classification (R3, R4)."""
    if party == label.originator:
        return label.classification
    try:
        return equivalent(agreement, level(label, agreement), party)
    except MarkingError as exc:
        raise LabelInvalid(str(exc)) from None


def display(label: Label, agreement: Agreement, party: str) -> str:
    """R4: the recipient's marking together with the provider's name and marking."""
    own = marking_for(label, agreement, party)
    if party == label.originator:
        return own
    return f"{own} (provided by {label.originator} as {label.classification} under {agreement.id})"


def narrows(parent: Label, child: Label) -> bool:
    """Releasability only narrows from hop to hop: a derived label may not widen it."""
    if not set(child.releasable_to) <= set(parent.releasable_to):
        return False
    if not parent.purposes:  # no purpose restriction to narrow from
        return True
    return bool(child.purposes) and set(child.purposes) <= set(parent.purposes)
