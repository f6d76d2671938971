"""Agreement files: the terms of an agreement and its recorded notes, as data.

An agreement file (TOML, see ``docs/agreement-format.md``) is the policy: parties,
term and renewal, notice period, classification equivalence (R3), national schemes,
the protection suite, the diplomatic notes recorded so far, and for an arrangement that
routes items through a hub (R18) its scope tags, hub, forwarding rule and carriers. ``parse`` checks
every key and refuses anything it does not know, naming the file, the key and the
problem; it never guesses.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gsomia.core.errors import AgreementFileError

ResumeEffect = Literal["immediate", "renotice"]
Suite = Literal["classic", "pq-hybrid"]
Approval = Literal["originator"]

RESUME_EFFECTS: tuple[ResumeEffect, ...] = ("immediate", "renotice")
SUITES: tuple[Suite, ...] = ("classic", "pq-hybrid")
APPROVALS: tuple[Approval, ...] = ("originator",)
_PARTY = re.compile(r"^[A-Z]{3}$")
# A scope tag is written in a label's ``purposes`` (``nk-missile``): lower-case words joined by
# hyphens, so the file and the label cannot spell one tag two ways.
_TAG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Agreement ids as the shipped files spell them (``kr-us-gsomia-1987``): ``carried_by`` names
# other files by these.
_AGREEMENT_ID = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")


# Each party's own civil time, in which its people read every instant (``Agreement.zone_of``).
# The agreement's zone (``timezone`` in its file) governs its anniversaries and deadlines, and is
# the zone shown where no party is reading.
PARTY_ZONES = {"KOR": "Asia/Seoul", "JPN": "Asia/Tokyo", "USA": "America/New_York"}


def party_zone(party: str | None) -> ZoneInfo:
    """The zone ``party``'s people read instants in; UTC for a party the map does not know."""
    return ZoneInfo(PARTY_ZONES.get(party or "", "UTC"))


def short_time(at: datetime) -> str:
    """An instant for people, in the zone it carries: ``2019-11-23 00:00 KST`` (seconds only
    when there are any). JSON keeps ISO 8601 with the offset instead."""
    abbreviation = at.tzname() or at.strftime("%z")
    if abbreviation.startswith(("+", "-")):  # a zone without a name of its own: its offset, as +09:00
        abbreviation = at.isoformat()[-6:]
    return f"{at:%Y-%m-%d %H:%M}{at.strftime(':%S') if at.second else ''} {abbreviation}"


def normalize_marking(text: str) -> str:
    """The form national markings are compared in: Unicode NFKC. 군사Ⅱ급비밀 with the Roman numeral
    Ⅱ (U+2161) is 군사II급비밀, full-width ＳＥＣＲＥＴ is SECRET, and Hangul and kana compose as in
    NFC. The one normalisation of markings (``schemes``, ``users``, the command line)."""
    return unicodedata.normalize("NFKC", text)


class NoteType(StrEnum):
    """The diplomatic notes the lifecycle understands (R13, R15)."""

    TERMINATION = "termination_notice"
    SUSPEND = "suspend_notice"
    RESUME = "resume_notice"
    WITHDRAW = "withdraw_notice"


@dataclass(frozen=True, slots=True)
class Note:
    """One recorded diplomatic note. ``at`` is UTC; ``index`` is its place in the file."""

    at: datetime
    by: str
    type: NoteType
    index: int
    conditions: tuple[str, ...] = ()
    ref: str | None = None

    @property
    def key(self) -> str:
        return f"notes[{self.index}]"


@dataclass(frozen=True, slots=True)
class Term:
    """Duration and renewal (R13): calendar years in the agreement's zone."""

    initial_years: int
    renewal_years: int
    notice_days: int
    resume_effect: ResumeEffect


@dataclass(frozen=True, slots=True)
class Level:
    """One equivalence class of classifications (R3), e.g. SECRET.

    ``markings`` gives each party's national markings of this class. Where a party
    has more than one, ``receive_as`` names the one it marks received items with
    (R4); without it the mapping back is ambiguous and is refused, never guessed.
    """

    name: str
    markings: Mapping[str, tuple[str, ...]]
    receive_as: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What the hub of a multi-party arrangement needs before it passes an item on (R18).

    ``approval = "originator"``: the hub forwards an item to a party other than the one that
    gave it only with that originator's approval."""

    approval: Approval


@dataclass(frozen=True, eq=False)
class Agreement:
    """The parsed, validated terms of one agreement. Instants are UTC."""

    id: str
    title: str
    timezone: str
    parties: tuple[str, ...]
    entry_into_force: datetime
    term: Term | None
    levels: tuple[Level, ...]
    notes: tuple[Note, ...]
    readings: Mapping[str, ResumeEffect]
    schemes: Mapping[str, tuple[str, ...]]
    suite: Suite = "classic"
    binding: bool = True
    scope: str | None = None
    # What a label's ``purposes`` must stay within for an item to be in scope (``route.in_scope``);
    # empty: the agreement sets no machine-checked limit.
    scope_tags: tuple[str, ...] = ()
    # The party every item passes through (R18: the USA), or None for direct sharing.
    hub: str | None = None
    forwarding: Forwarding | None = None
    # Ids of the bilateral agreements each hop to or from the hub travels under.
    carried_by: tuple[str, ...] = ()
    source: str = "<agreement>"
    # Memo for the lifecycle engine (derived data only, never state).
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, at: datetime) -> datetime:
        """An instant shown in the agreement's zone (edge case 2)."""
        return at.astimezone(self.zone)

    def zone_of(self, party: str | None) -> ZoneInfo:
        """The zone ``party``'s people read instants in (``PARTY_ZONES``); the agreement's own
        where no party is reading, or for a party the map does not know."""
        name = PARTY_ZONES.get(party or "")
        return ZoneInfo(name) if name else self.zone

    def shown(self, at: datetime, party: str | None = None) -> str:
        """``at`` for ``party``'s people (the agreement's zone without one): ``2019-11-23 00:00 KST``."""
        return short_time(at.astimezone(self.zone_of(party)))

    def with_notes(self, notes: tuple[Note, ...]) -> Agreement:
        """The same terms with another note history (re-validated by the lifecycle)."""
        return Agreement(
            id=self.id,
            title=self.title,
            timezone=self.timezone,
            parties=self.parties,
            entry_into_force=self.entry_into_force,
            term=self.term,
            levels=self.levels,
            notes=notes,
            readings=self.readings,
            schemes=self.schemes,
            suite=self.suite,
            binding=self.binding,
            scope=self.scope,
            scope_tags=self.scope_tags,
            hub=self.hub,
            forwarding=self.forwarding,
            carried_by=self.carried_by,
            source=self.source,
        )


_TOP_KEYS = {
    "id",
    "title",
    "timezone",
    "parties",
    "entry_into_force",
    "term",
    "levels",
    "notes",
    "readings",
    "schemes",
    "protection",
    "binding",
    "scope",
    "scope_tags",
    "hub",
    "forwarding",
    "carried_by",
    "description",
}


class _Reader:
    """Typed access to a TOML table that names the offending key on every error."""

    def __init__(self, source: str, table: Mapping[str, Any], prefix: str, allowed: set[str]):
        self.source = source
        self.table = table
        self.prefix = prefix
        for key in table:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> AgreementFileError:
        return AgreementFileError(self.source, self.path(key), problem)

    def get(self, key: str, kind: type, required: bool = True, default: Any = None) -> Any:
        if key not in self.table:
            if required:
                raise self.error(key, "missing")
            return default
        value = self.table[key]
        # bool is an int in Python; an agreement file never means one for the other.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, not {_describe(value)}")
        return value

    def text(self, key: str, required: bool = True) -> str | None:
        value = self.get(key, str, required)
        if value is not None and not value.strip():
            raise self.error(key, "must not be empty")
        return cast("str | None", value)

    def instant(self, key: str) -> datetime:
        value = self.table.get(key)
        if key not in self.table:
            raise self.error(key, "missing")
        if not isinstance(value, datetime):
            raise self.error(
                key, f"must be an offset date-time such as 2016-11-23T00:00:00+09:00, not {_describe(value)}"
            )
        if value.tzinfo is None:
            raise self.error(key, "must carry a UTC offset (e.g. +09:00); a local date-time is ambiguous")
        return value.astimezone(UTC)

    def positive(self, key: str) -> int:
        value = cast(int, self.get(key, int))
        if value <= 0:
            raise self.error(key, f"must be a positive whole number, not {value}")
        return value

    def strings(self, key: str, required: bool = True) -> tuple[str, ...]:
        value = self.get(key, list, required, default=[])
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise AgreementFileError(self.source, f"{self.path(key)}[{i}]", "must be non-empty text")
        return tuple(value)


_KIND_NAMES = {str: "text", int: "a whole number", list: "a list", dict: "a table", bool: "true or false"}


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime):
        return "a local date-time" if value.tzinfo is None else "a date-time"
    return f"{type(value).__name__} {value!r}"


def _party(reader: _Reader, key: str, code: object, parties: tuple[str, ...] | None) -> str:
    if not isinstance(code, str) or not _PARTY.match(code):
        raise reader.error(key, f"{code!r} is not an ISO 3166-1 alpha-3 code such as KOR")
    if parties is not None and code not in parties:
        raise reader.error(key, f"unknown party {code!r} (parties: {', '.join(parties)})")
    return code


def parse(data: Mapping[str, Any], source: str = "<agreement>") -> Agreement:
    """Validate a decoded agreement file. Pure: no I/O, no clock."""
    top = _Reader(source, data, "", _TOP_KEYS)
    agreement_id = cast(str, top.text("id"))
    title = cast(str, top.text("title"))
    timezone = cast(str, top.text("timezone"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise top.error("timezone", f"{timezone!r} is not an IANA time zone such as Asia/Seoul") from None

    raw_parties = top.get("parties", list)
    parties = tuple(_party(top, f"parties[{i}]", p, None) for i, p in enumerate(raw_parties))
    if len(parties) < 2:
        raise top.error("parties", "an agreement needs at least two parties")
    if len(set(parties)) != len(parties):
        raise top.error("parties", "a party is listed twice")
    entry = top.instant("entry_into_force")

    term = _parse_term(source, top.get("term", dict, required=False))
    schemes = _parse_schemes(source, top.get("schemes", dict, required=False, default={}))
    levels = _parse_levels(source, top.get("levels", list, required=False, default=[]), parties, schemes)
    notes = _parse_notes(source, top.get("notes", list, required=False, default=[]), parties)
    readings = _parse_readings(source, top.get("readings", dict, required=False, default={}), parties)
    suite: Suite = "classic"
    protection = top.get("protection", dict, required=False)
    if protection is not None:
        prot = _Reader(source, protection, "protection", {"suite"})
        chosen = prot.get("suite", str)
        if chosen not in SUITES:
            raise prot.error("suite", f"{chosen!r} is not a suite (one of: {', '.join(SUITES)})")
        suite = cast(Suite, chosen)
    top.text("description", required=False)
    if readings and term is None:
        raise top.error("readings", "readings of a resumed notice need a [term] with notice rules")
    if notes and term is None:
        raise top.error("notes", "diplomatic notes need a [term] with notice rules")
    scope = top.text("scope", required=False)
    scope_tags = _parse_scope_tags(top, scope)
    hub, forwarding, carried_by = _parse_route(top, agreement_id, parties)
    # A hub with nothing to judge scope or forwarding by would pass on anything (R18).
    if hub is not None and not scope_tags:
        raise top.error("hub", "a hub needs scope_tags: what may travel through it")
    if hub is not None and forwarding is None:
        raise top.error("hub", "a hub needs [forwarding]: what it needs before it passes an item on")

    return Agreement(
        id=agreement_id,
        title=title,
        timezone=timezone,
        parties=parties,
        entry_into_force=entry,
        term=term,
        levels=levels,
        notes=notes,
        readings=MappingProxyType(readings),
        schemes=MappingProxyType(schemes),
        suite=suite,
        binding=cast(bool, top.get("binding", bool, required=False, default=True)),
        scope=scope,
        scope_tags=scope_tags,
        hub=hub,
        forwarding=forwarding,
        carried_by=carried_by,
        source=source,
    )


def _parse_scope_tags(top: _Reader, scope: str | None) -> tuple[str, ...]:
    if "scope_tags" not in top.table:
        return ()
    tags = top.strings("scope_tags")
    if not tags:
        raise top.error("scope_tags", "needs at least one tag (leave the key out for no machine-checked scope)")
    for i, tag in enumerate(tags):
        if not _TAG.match(tag):
            raise AgreementFileError(
                top.source,
                f"scope_tags[{i}]",
                f"{tag!r} is not a tag: lower-case letters and digits in words joined by hyphens, such as nk-missile",
            )
    if len(set(tags)) != len(tags):
        raise top.error("scope_tags", "a tag is listed twice")
    if scope is None:
        raise top.error("scope_tags", "needs scope, the words the tags stand for")
    return tags


def _parse_route(
    top: _Reader, agreement_id: str, parties: tuple[str, ...]
) -> tuple[str | None, Forwarding | None, tuple[str, ...]]:
    """``hub``, ``[forwarding]`` and ``carried_by``: how items travel under an arrangement of more
    than two parties (R18). Each needs the one before it; none is possible between two parties,
    who share directly."""
    raw_hub = top.get("hub", str, required=False)
    raw_forwarding = top.get("forwarding", dict, required=False)
    has_carriers = "carried_by" in top.table
    present = {"hub": raw_hub is not None, "forwarding": raw_forwarding is not None, "carried_by": has_carriers}
    for key, given in present.items():
        if given and len(parties) < 3:
            raise top.error(
                key, f"only an arrangement of more than two parties routes items through a hub; {agreement_id} has two"
            )
    hub = None if raw_hub is None else _party(top, "hub", raw_hub, parties)
    if hub is not None and not has_carriers:
        raise top.error("hub", "a hub needs carried_by: the bilateral agreements its hops travel under")
    if hub is None and has_carriers:
        raise top.error("carried_by", "needs hub: the party whose bilateral agreements carry the items")
    forwarding = None
    if raw_forwarding is not None:
        if hub is None:
            raise top.error("forwarding", "needs hub: only a hub forwards")
        fwd = _Reader(top.source, raw_forwarding, "forwarding", {"approval"})
        approval = fwd.get("approval", str)
        if approval not in APPROVALS:
            raise fwd.error("approval", f"{approval!r} is not one of: {', '.join(APPROVALS)}")
        forwarding = Forwarding(approval=cast(Approval, approval))
    carried_by: tuple[str, ...] = ()
    if has_carriers:
        carried_by = top.strings("carried_by")
        if not carried_by:
            raise top.error("carried_by", "needs at least one agreement id")
        for i, other in enumerate(carried_by):
            key = f"carried_by[{i}]"
            if not _AGREEMENT_ID.match(other):
                raise AgreementFileError(top.source, key, f"{other!r} is not an agreement id such as kr-us-gsomia-1987")
            if other == agreement_id:
                raise AgreementFileError(top.source, key, f"{agreement_id} cannot be carried by itself")
        if len(set(carried_by)) != len(carried_by):
            raise top.error("carried_by", "an agreement is listed twice")
        if len(carried_by) > len(parties) - 1:
            raise top.error(
                "carried_by",
                f"names {len(carried_by)} agreements, but the hub {hub} has only {len(parties) - 1} partners",
            )
    return hub, forwarding, carried_by


def _parse_term(source: str, table: Mapping[str, Any] | None) -> Term | None:
    if table is None:
        return None
    r = _Reader(source, table, "term", {"initial_years", "renewal_years", "notice_days", "resume_effect"})
    effect = r.get("resume_effect", str, required=False, default="renotice")
    if effect not in RESUME_EFFECTS:
        raise r.error("resume_effect", f"{effect!r} is not one of: {', '.join(RESUME_EFFECTS)}")
    return Term(
        initial_years=r.positive("initial_years"),
        renewal_years=r.positive("renewal_years"),
        notice_days=r.positive("notice_days"),
        resume_effect=cast(ResumeEffect, effect),
    )


def _parse_schemes(source: str, table: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    r = _Reader(source, table, "schemes", set(table))
    schemes: dict[str, tuple[str, ...]] = {}
    for code in table:
        _party(r, code, code, None)
        markings = r.strings(code)
        if not markings:
            raise r.error(code, "a national scheme needs at least one marking, lowest first")
        if len({normalize_marking(m) for m in markings}) != len(markings):
            raise r.error(code, "a marking is listed twice (markings are compared in Unicode NFKC)")
        schemes[code] = markings
    return schemes


def _parse_levels(
    source: str, rows: list[Any], parties: tuple[str, ...], schemes: Mapping[str, tuple[str, ...]]
) -> tuple[Level, ...]:
    levels: list[Level] = []
    seen: dict[tuple[str, str], str] = {}
    previous_rank: dict[str, int] = {}
    for i, row in enumerate(rows):
        prefix = f"levels[{i}]"
        if not isinstance(row, dict):
            raise AgreementFileError(source, prefix, "must be a table ([[levels]])")
        r = _Reader(source, row, prefix, {"name", "receive_as", *parties})
        name = cast(str, r.text("name"))
        markings: dict[str, tuple[str, ...]] = {}
        for party in parties:
            own = r.strings(party)
            if not own:
                raise r.error(party, f"level {name} needs at least one {party} marking")
            for marking in own:
                if (party, marking) in seen:
                    raise r.error(party, f"{marking!r} already belongs to level {seen[(party, marking)]}")
                seen[(party, marking)] = name
                scheme = schemes.get(party)
                if scheme is not None:
                    if marking not in scheme:
                        raise r.error(party, f"{marking!r} is not in the {party} scheme ([schemes].{party})")
                    rank = scheme.index(marking)
                    if rank <= previous_rank.get(party, -1):
                        raise r.error(
                            party, f"{marking!r} ranks below a lower level's marking: list levels lowest first"
                        )
            markings[party] = own
        for party in parties:
            scheme = schemes.get(party)
            if scheme is not None:
                previous_rank[party] = max(scheme.index(m) for m in markings[party])
        receive_as: dict[str, str] = {}
        raw = r.get("receive_as", dict, required=False, default={})
        rr = _Reader(source, raw, f"{prefix}.receive_as", set(parties))
        for party, marking in raw.items():
            if not isinstance(marking, str) or marking not in markings[party]:
                raise rr.error(party, f"{marking!r} is not one of this level's {party} markings")
            receive_as[party] = marking
        levels.append(Level(name, MappingProxyType(markings), MappingProxyType(receive_as)))
    return tuple(levels)


def _parse_notes(source: str, rows: list[Any], parties: tuple[str, ...]) -> tuple[Note, ...]:
    notes: list[Note] = []
    kinds = [t.value for t in NoteType]
    for i, row in enumerate(rows):
        prefix = f"notes[{i}]"
        if not isinstance(row, dict):
            raise AgreementFileError(source, prefix, "must be a table ([[notes]])")
        r = _Reader(source, row, prefix, {"at", "by", "type", "conditions", "ref"})
        kind = r.get("type", str)
        if kind not in kinds:
            raise r.error("type", f"{kind!r} is not a note type (one of: {', '.join(kinds)})")
        notes.append(
            Note(
                at=r.instant("at"),
                by=_party(r, "by", r.get("by", str), parties),
                type=NoteType(kind),
                index=i,
                conditions=r.strings("conditions", required=False),
                ref=r.text("ref", required=False),
            )
        )
    return tuple(notes)


def _parse_readings(source: str, table: Mapping[str, Any], parties: tuple[str, ...]) -> dict[str, ResumeEffect]:
    r = _Reader(source, table, "readings", set(table))
    readings: dict[str, ResumeEffect] = {}
    for code, value in table.items():
        _party(r, code, code, parties)
        if value not in RESUME_EFFECTS:
            raise r.error(code, f"{value!r} is not one of: {', '.join(RESUME_EFFECTS)}")
        readings[code] = cast(ResumeEffect, value)
    return readings


def bilaterals(agreements: Iterable[Agreement], party: str) -> dict[str, Agreement]:
    """``party``'s bilateral agreements among ``agreements``, by the other party (the first
    where two join one pair: a node's configuration refuses that)."""
    found: dict[str, Agreement] = {}
    for agreement in agreements:
        if len(agreement.parties) == 2 and party in agreement.parties:
            other = next(p for p in agreement.parties if p != party)
            found.setdefault(other, agreement)
    return found


def load(path: str | Path) -> Agreement:
    """Read and validate an agreement file; every failure is an ``AgreementFileError``."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise AgreementFileError(source, "", "no such file") from None
    except IsADirectoryError:
        raise AgreementFileError(source, "", "is a directory, not an agreement file") from None
    except OSError as exc:
        raise AgreementFileError(source, "", f"cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise AgreementFileError(source, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgreementFileError(source, "", f"malformed TOML ({exc})") from None
    return parse(data, source)
