"""The agreement's status at any instant: a pure function of its terms and notes.

Rules (docs/rules.md):
- R13: in force from entry into force; terms are calendar years in the agreement's
  zone (the initial term, then renewals), extended automatically unless a party
  gives notice before ``term_end - notice_days``. A late notice ends the agreement
  at the end of the first later term it is in time for.
- R14: once terminated, always terminated (protection of what was provided
  persists; that is the policy engine's business, not this module's).
- R15: a termination notice can be suspended by the party that gave it; the
  agreement stays in force and renews meanwhile. A resumed notice takes effect
  per the reading applied: ``immediate`` (the later of the resume instant and the
  original end) or ``renotice`` (a fresh notice given at the resume instant).
  Where the parties' readings differ the status says so.

A history is compiled once per (agreement, reading) into segments; ``status`` is
then a binary search, which is what lets it answer 100,000+ times a second.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dateutil.relativedelta import relativedelta

from gsomia.core.agreement.terms import Agreement, Note, NoteType, ResumeEffect
from gsomia.core.errors import InvalidHistory, InvalidInput

_MAX_TERMS = 10_000  # far beyond any real agreement; stops a runaway search


class State(StrEnum):
    NOT_IN_FORCE_YET = "not_in_force_yet"
    IN_FORCE = "in_force"
    TERMINATION_PENDING = "termination_pending"
    TERMINATION_SUSPENDED = "termination_suspended"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Termination:
    """A termination notice in play (or the one that ended the agreement)."""

    by: str
    notified_at: datetime
    effective_at: datetime
    suspended_at: datetime | None = None
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dispute:
    """The parties read a resumed notice differently (R15): both are shown."""

    readings: tuple[tuple[str, ResumeEffect], ...]


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    in_force: bool
    term_start: datetime | None
    term_end: datetime | None
    notice_deadline: datetime | None
    termination: Termination | None
    terminated_at: datetime | None
    reading: ResumeEffect
    dispute: Dispute | None = None

    @property
    def refusing_rule(self) -> str:
        """The rule that refuses a provision at this status: R14 once terminated (no revival), R13
        otherwise (not yet in force, or suspended)."""
        return "R14" if self.state is State.TERMINATED else "R13"


@dataclass(frozen=True, slots=True)
class Segment:
    """From ``start`` on (until the next segment), this termination is in play."""

    start: datetime
    termination: Termination | None
    terminated: bool
    note: Note | None


@dataclass(frozen=True, slots=True)
class History:
    segments: tuple[Segment, ...]
    starts: tuple[datetime, ...]
    reading: ResumeEffect
    dispute: Dispute | None


# --- the calendar of terms -------------------------------------------------------


def _bounds(agreement: Agreement, upto: datetime) -> list[datetime]:
    """Term boundaries (UTC) from entry into force, extended lazily past ``upto``.

    Anniversaries are computed from entry into force each time (never by adding a
    year to the previous one) so 29 February and month ends do not drift.
    """
    bounds: list[datetime] = agreement.cache.setdefault("bounds", [])
    if not bounds:
        bounds.append(agreement.entry_into_force)
    term = agreement.term
    if term is None:
        return bounds
    start = agreement.local(agreement.entry_into_force)
    while bounds[-1] <= upto and len(bounds) < _MAX_TERMS:
        k = len(bounds)
        years = term.initial_years + (k - 1) * term.renewal_years
        try:
            bounds.append((start + relativedelta(years=years)).astimezone(UTC))
        except (ValueError, OverflowError):  # past year 9999: ``term_at`` refuses what lies beyond
            break
    return bounds


def term_at(agreement: Agreement, at: datetime) -> tuple[datetime, datetime | None]:
    """The term containing ``at`` (the first term if ``at`` precedes entry into force)."""
    bounds = _bounds(agreement, at)
    if agreement.term is None:
        return bounds[0], None
    k = max(bisect_right(bounds, at) - 1, 0)
    if k + 1 >= len(bounds):
        raise InvalidInput(f"{at.isoformat()} is beyond the last term gsomia computes")
    return bounds[k], bounds[k + 1]


def notice_deadline(agreement: Agreement, term_end: datetime) -> datetime:
    """The instant a notice must precede to stop the renewal at ``term_end``."""
    assert agreement.term is not None
    deadlines: dict[datetime, datetime] = agreement.cache.setdefault("deadlines", {})
    deadline = deadlines.get(term_end)
    if deadline is None:
        local_end = agreement.local(term_end)
        try:
            deadline = (local_end - relativedelta(days=agreement.term.notice_days)).astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidInput(
                f"{agreement.source}: term.notice_days: {agreement.term.notice_days} days before "
                f"{local_end.isoformat()} is before year 1"
            ) from None
        deadlines[term_end] = deadline
    return deadline


def effective_end(agreement: Agreement, notified_at: datetime) -> datetime:
    """End of the first term whose notice deadline is after ``notified_at`` (R13)."""
    _, end = term_at(agreement, notified_at)
    assert end is not None
    while notice_deadline(agreement, end) <= notified_at:
        _, nxt = term_at(agreement, end)
        assert nxt is not None
        end = nxt
    return end


# --- compiling a history -----------------------------------------------------------


def _ordered(notes: tuple[Note, ...]) -> list[Note]:
    # Notes at the same instant keep their file order.
    return sorted(notes, key=lambda n: (n.at, n.index))


def _fail(agreement: Agreement, note: Note, problem: str) -> InvalidHistory:
    what = f"{note.type.value} by {note.by} at {agreement.local(note.at).isoformat()}"
    return InvalidHistory(agreement.source, note.key, f"{what}: {problem}")


def compile_history(agreement: Agreement, reading: ResumeEffect | None = None) -> History:
    """Replay the notes once; raise ``InvalidHistory`` naming the first impossible note."""
    key = ("history", reading)
    cached = agreement.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    effect: ResumeEffect = reading or (agreement.term.resume_effect if agreement.term else "renotice")
    segments = [Segment(agreement.entry_into_force, None, False, None)]
    current: Termination | None = None

    for note in _ordered(agreement.notes):
        if note.by not in agreement.parties:
            raise _fail(agreement, note, f"{note.by} is not a party to {agreement.id}")
        if note.at < agreement.entry_into_force:
            raise _fail(agreement, note, "given before entry into force")
        if current is not None and current.suspended_at is None and current.effective_at <= note.at:
            end = agreement.local(current.effective_at).isoformat()
            raise _fail(agreement, note, f"given after the agreement terminated at {end}")
        current = _apply(agreement, current, note, effect)
        segments.append(Segment(note.at, current, False, note))

    if current is not None and current.suspended_at is None:
        segments.append(Segment(current.effective_at, current, True, None))
    segments.sort(key=lambda s: s.start)  # stable: a zero-length segment keeps its place
    history = History(tuple(segments), tuple(s.start for s in segments), effect, _dispute(agreement))
    agreement.cache[key] = history
    return history


def _apply(agreement: Agreement, current: Termination | None, note: Note, effect: ResumeEffect) -> Termination | None:
    if note.type is NoteType.TERMINATION:
        if current is not None and current.suspended_at is None:
            raise _fail(
                agreement,
                note,
                f"a termination notice by {current.by} is already pending; withdraw or suspend it first",
            )
        if agreement.term is None:  # nothing to count a notice period against
            raise _fail(agreement, note, f"{agreement.id} has no term: it records no termination notice")
        # A fresh notice replaces a suspended one: the party says so anew (R15).
        return Termination(note.by, note.at, effective_end(agreement, note.at), None, note.conditions)
    if current is None:
        raise _fail(agreement, note, "there is no termination notice to act on")
    if note.by != current.by:
        raise _fail(agreement, note, f"only {current.by}, which gave the termination notice, can act on it")
    if note.type is NoteType.SUSPEND:
        if current.suspended_at is not None:
            raise _fail(agreement, note, "the termination notice is already suspended")
        return replace(current, suspended_at=note.at, conditions=note.conditions or current.conditions)
    if note.type is NoteType.RESUME:
        if current.suspended_at is None:
            raise _fail(agreement, note, "the termination notice is not suspended; there is nothing to resume")
        if effect == "immediate":
            return Termination(
                current.by, current.notified_at, max(note.at, current.effective_at), None, current.conditions
            )
        return Termination(current.by, note.at, effective_end(agreement, note.at), None, current.conditions)
    # withdraw_notice: normal renewal goes on.
    return None


def _dispute(agreement: Agreement) -> Dispute | None:
    readings = agreement.readings
    if len(set(readings.values())) > 1:
        return Dispute(tuple(sorted(readings.items())))
    return None


# --- the status at an instant -----------------------------------------------------


def status(agreement: Agreement, at: datetime, reading: str | None = None) -> Status:
    """The agreement's status at ``at`` (an aware datetime). Pure.

    ``reading`` is a party code (apply that party's reading of a resumed notice,
    R15) or an effect (``immediate``/``renotice``); None applies the file's
    ``[term].resume_effect``.
    """
    if at.tzinfo is None:
        raise InvalidInput("an instant must carry a UTC offset")
    at = at.astimezone(UTC)  # like with like: comparing across offsets costs more than the search
    # The items of one batch share their release instant: the policy, the egress guard and
    # the receiver ask for the status at it once per item. Remember the last answer.
    last = agreement.cache.get("last_status")
    if last is not None and last[0] == at and last[1] == reading:
        return last[2]  # type: ignore[no-any-return]
    found = _status(agreement, at, reading)
    agreement.cache["last_status"] = (at, reading, found)  # one tuple, replaced whole: safe across threads
    return found


def _status(agreement: Agreement, at: datetime, reading: str | None) -> Status:
    effect = resolve_reading(agreement, reading)
    history = compile_history(agreement, effect)
    i = bisect_right(history.starts, at) - 1
    if at < agreement.entry_into_force:
        start, end = term_at(agreement, agreement.entry_into_force)
        deadline = notice_deadline(agreement, end) if end is not None else None
        return Status(State.NOT_IN_FORCE_YET, False, start, end, deadline, None, None, effect, None)
    seg = history.segments[i]
    termination = seg.termination
    if seg.terminated:
        assert termination is not None
        return Status(State.TERMINATED, False, None, None, None, termination, termination.effective_at, effect)
    start, end = term_at(agreement, at)
    deadline = notice_deadline(agreement, end) if end is not None else None
    if termination is None:
        state = State.IN_FORCE
    elif termination.suspended_at is None:
        state = State.TERMINATION_PENDING
    else:
        state = State.TERMINATION_SUSPENDED
    # The readings differ only on what resuming a suspended notice does (R15).
    dispute = history.dispute if state is State.TERMINATION_SUSPENDED else None
    return Status(state, True, start, end, deadline, termination, None, effect, dispute)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a timeline: something happened at ``at``; ``state`` is the state after it."""

    at: datetime
    kind: str  # entry_into_force | renewal | note type | terminated
    detail: str
    state: State
    note: Note | None = None


def timeline(agreement: Agreement, reading: str | None = None, until: datetime | None = None) -> list[Event]:
    """Entry into force, every renewal, every note and every change of state, in order.

    Without ``until`` the timeline runs to the end of the term of the last note (or to the end).
    """
    effect = resolve_reading(agreement, reading)
    history = compile_history(agreement, effect)
    last = max([agreement.entry_into_force, *(n.at for n in agreement.notes)])
    terminated_at = next((s.start for s in history.segments if s.terminated), None)
    if until is None:
        _, end = term_at(agreement, last)
        until = last if end is None else end
        if terminated_at is not None:
            until = max(until, terminated_at)
    events = [Event(agreement.entry_into_force, "entry_into_force", "in force", State.IN_FORCE)]
    stop = min(until, terminated_at) if terminated_at else until
    if agreement.term is not None:
        for bound in _bounds(agreement, stop)[1:]:
            # A renewal at exactly ``until`` is shown, like a note at that instant.
            if bound > stop or bound == terminated_at:
                break
            deadline = notice_deadline(agreement, term_at(agreement, bound)[1] or bound)
            detail = f"renewed; notice deadline {agreement.local(deadline):%Y-%m-%d %H:%M}"
            events.append(Event(bound, "renewal", detail, status(agreement, bound, effect).state))
    for seg in history.segments[1:]:
        if seg.note is not None:
            n = seg.note
            detail = "conditions: " + "; ".join(n.conditions) if n.conditions else ""
            if seg.termination is not None and n.type is NoteType.TERMINATION:
                detail = f"effective {agreement.local(seg.termination.effective_at):%Y-%m-%d %H:%M}"
            events.append(Event(n.at, n.type.value, detail, status(agreement, n.at, effect).state, n))
        elif seg.terminated and seg.termination is not None:
            detail = f"notice by {seg.termination.by} takes effect"
            events.append(Event(seg.start, "terminated", detail, State.TERMINATED))
    order = {"entry_into_force": 0, "renewal": 1, "terminated": 3}
    events.sort(key=lambda e: (e.at, order.get(e.kind, 2)))
    return [e for e in events if e.at <= until]


def resolve_reading(agreement: Agreement, reading: str | None) -> ResumeEffect:
    if reading is None:
        return agreement.term.resume_effect if agreement.term else "renotice"
    if reading == "immediate":
        return "immediate"
    if reading == "renotice":
        return "renotice"
    if reading in agreement.readings:
        return agreement.readings[reading]
    if reading in agreement.parties:
        raise InvalidInput(f"{agreement.source}: readings: {reading} has no recorded reading of a resumed notice")
    raise InvalidInput(
        f"unknown reading {reading!r}: give a party ({', '.join(agreement.parties)}) or immediate/renotice"
    )


def validate(agreement: Agreement) -> list[str]:
    """Every problem with the history under every reading, as one line each."""
    found: dict[str, list[ResumeEffect]] = {}
    effects = {resolve_reading(agreement, None), *agreement.readings.values()}
    for effect in sorted(effects):
        try:
            compile_history(agreement, effect)
        except InvalidHistory as exc:
            found.setdefault(str(exc), []).append(effect)
    # A problem under every reading is one problem: one line, with no reading named.
    return [
        line if len(under) == len(effects) else f"{line} (under the {' and '.join(under)} reading)"
        for line, under in found.items()
    ]


def as_json(agreement: Agreement, s: Status) -> dict[str, Any]:
    """The status with instants in ISO 8601 at the agreement's offset."""

    def iso(at: datetime | None) -> str | None:
        return None if at is None else agreement.local(at).isoformat()

    t = s.termination
    return {
        "state": s.state.value,
        "in_force": s.in_force,
        "term_start": iso(s.term_start),
        "term_end": iso(s.term_end),
        "notice_deadline": iso(s.notice_deadline),
        "termination": None
        if t is None
        else {
            "by": t.by,
            "notified_at": iso(t.notified_at),
            "effective_at": iso(t.effective_at),
            "suspended_at": iso(t.suspended_at),
            "conditions": list(t.conditions),
        },
        "terminated_at": iso(s.terminated_at),
        "reading": s.reading,
        "dispute": None if s.dispute is None else dict(s.dispute.readings),
    }
